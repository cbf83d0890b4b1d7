"""Exports the encoder of a workdir for use outside ssl_jax.

    python -m ssl_jax.export --workdir=W --format=npz --output=encoder.npz
    python -m ssl_jax.export --workdir=W --format=torchvision --output=resnet50.safetensors
    python -m ssl_jax.export --workdir=W --format=jax_export --output=encoder.jaxexport

``npz``: every array of the encoder (``params`` and ``batch_stats``) named by its Flax
path (``params/block1_0/conv1/conv/kernel``), and the run's config.json under
``__config__``; any model.

``torchvision``: ResNet50 v1 at k=4 only (torchvision's resnet50; a k of ssl_jax scales
the stem and every stage output, which torchvision's ``width_per_group`` does not), as a
safetensors state_dict with torchvision's key names that ``torchvision.models.resnet50()``
loads with only ``fc`` missing; beside it, ``PATH.json`` holds the BN epsilon and the
input normalisation. The forward pass is the same computation: ssl_jax's convolutions pad
symmetrically (``layers.fixed_padding``: 3/3 for the 7x7 stem, 1/1 for 3x3, none for 1x1,
as PyTorch's ``padding=k//2``, not TF's asymmetric SAME), the stride sits on the 3x3 conv
(torchvision's v1.5), and the 3x3 max-pool's zero padding equals PyTorch's -inf padding
because it follows a ReLU. BatchNorm: the running variance is written plus (trained
epsilon - 1e-5), so the default ``eps=1e-5`` of ``nn.BatchNorm2d`` (torchvision,
Detectron2, mmdetection) reproduces the trained epsilon.

``jax_export``: a serialised :mod:`jax.export` function from uint8 images [N, S, S, 3]
(S = ``input.image_size``, already centrally cropped and resized; any N) to the pooled
``pre_logits`` features [N, D], with the weights inside; ``jax.export.deserialize`` on
the file's bytes, then ``.call(images)``, runs it without ssl_jax.
"""

from __future__ import annotations

import io
import json
import re
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_jax import encoder as encoder_lib
from ssl_jax import files
from ssl_jax.data import augment

FORMATS = ('npz', 'torchvision', 'jax_export')
CONFIG_KEY = '__config__'  # The npz entry holding config.json.
# nn.BatchNorm2d's default epsilon, which torchvision's resnet50 and the detection
# frameworks (Detectron2's FrozenBatchNorm2d, mmdetection) use.
TORCH_BN_EPSILON = 1e-5
# What torchvision.models.resnet50 is, in ssl_jax's model section.
TORCHVISION_RESNET50 = {'name': 'resnet', 'variant': 'v1', 'k': 4.0, 'units': (3, 4, 6, 3),
                        'root_stride': 2, 'stage_strides': (1, 2, 2, 2),
                        'representation_size': 0}
_BN_NAMES = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
             'var': 'running_var'}


def flax_path_arrays(variables: dict) -> dict[str, np.ndarray]:
  """{'params/root/conv/kernel': array, 'batch_stats/root_bn/mean': array, ...}."""
  flat = flax.traverse_util.flatten_dict(variables, sep='/')
  return {name: np.asarray(value) for name, value in flat.items()}


def npz_bytes(variables: dict, config: ml_collections.ConfigDict) -> bytes:
  """The ``npz`` export: arrays by Flax path, and config.json as a string array."""
  arrays = flax_path_arrays(variables)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays, **{CONFIG_KEY: np.asarray(config.to_json())})
  return buffer.getvalue()


def check_torchvision_resnet50(model: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming each field of the ``model`` section that torchvision's
  resnet50 cannot hold."""
  wrong = [f'model.{field}={model[field]!r} (torchvision: {value!r})'
           for field, value in TORCHVISION_RESNET50.items()
           if (tuple(model[field]) if isinstance(value, tuple) else model[field]) != value]
  if wrong:
    raise ValueError('--format=torchvision exports ResNet50 v1 at k=4 only (torchvision.'
                     'models.resnet50; other widths scale the stem and stage outputs, which '
                     'torchvision cannot hold); this run has ' + ', '.join(wrong) +
                     '. Use --format=npz or --format=jax_export for it.')


def torchvision_name(path: tuple[str, ...]) -> str:
  """The torchvision resnet50 state_dict key of one ssl_jax ResNet v1 variable path
  (``('block2_0', 'proj_bn', 'mean')`` -> ``layer2.0.downsample.1.running_mean``)."""
  module, leaf = path[:-1], path[-1]
  if module == ('root', 'conv'):
    return 'conv1.weight'
  if module == ('root_bn',):
    return f'bn1.{_BN_NAMES[leaf]}'
  match = re.fullmatch(r'block(\d)_(\d+)', module[0])
  if match:
    prefix = f'layer{match[1]}.{match[2]}'
    rest = module[1:]
    if rest in (('proj', 'conv'),):
      return f'{prefix}.downsample.0.weight'
    if rest == ('proj_bn',):
      return f'{prefix}.downsample.1.{_BN_NAMES[leaf]}'
    if len(rest) == 2 and re.fullmatch(r'conv\d', rest[0]) and rest[1] == 'conv':
      return f'{prefix}.{rest[0]}.weight'
    if len(rest) == 1 and re.fullmatch(r'bn\d', rest[0]):
      return f'{prefix}.{rest[0]}.{_BN_NAMES[leaf]}'
  raise ValueError(f'No torchvision resnet50 parameter for ssl_jax variable '
                   f'{"/".join(path)}.')


def torchvision_state_dict(variables: dict, bn_epsilon: float) -> dict[str, np.ndarray]:
  """The encoder ``variables`` of a ResNet50 v1 as torchvision's resnet50 state_dict
  (without ``fc``): conv kernels HWIO -> OIHW; the running variance plus
  ``bn_epsilon`` - 1e-5, so BatchNorm2d's default epsilon reproduces ``bn_epsilon``."""
  out = {}
  for collection in ('params', 'batch_stats'):
    for path, value in flax.traverse_util.flatten_dict(variables[collection]).items():
      value = np.asarray(value, np.float32)
      name = torchvision_name(path)
      if name.endswith('.weight') and value.ndim == 4:
        value = value.transpose(3, 2, 0, 1)
      if name.endswith('running_var'):
        value = value + np.float32(bn_epsilon - TORCH_BN_EPSILON)
        if (value <= 0).any():
          raise ValueError(f'model.bn_epsilon={bn_epsilon} is below PyTorch\'s 1e-5 and '
                           f'{name} has variances under the difference: export with '
                           '--format=npz and set eps on the BatchNorm2d layers instead.')
      out[name] = np.ascontiguousarray(value)
  for name in [n for n in out if n.endswith('running_mean')]:
    out[name.replace('running_mean', 'num_batches_tracked')] = np.zeros((), np.int64)
  return out


def input_normalization(config: ml_collections.ConfigDict) -> dict:
  """How images enter the network (the evaluation preprocessing of ``config``), as
  mean/std of channels in RGB order on the 0-1 and the 0-255 scale, or as per-image
  standardisation (Exemplar and the patch tasks, which no fixed mean/std expresses)."""
  inp = config.input
  common = {'channel_order': 'RGB', 'image_size': inp.image_size,
            'eval_crop_fraction': inp.eval_crop_fraction, 'eval_resize': inp.eval_resize,
            'eval_patch_grid': inp.eval_patch_grid}
  if inp.eval_standardize:
    return {'mode': 'per_image_standardization', 'scale': '0-255',
            'formula': '(x - mean(x)) / max(std(x), 1 / sqrt(x.size)) per image (per '
                       'patch), on 0-255 values', **common}
  mode = config.augment.normalize
  mean, std = {'unit': ((0.0,) * 3, (1.0,) * 3),
               'imagenet': (augment.IMAGENET_MEAN, augment.IMAGENET_STD),
               'symmetric': ((0.5,) * 3, (0.5,) * 3)}[mode]
  return {'mode': mode, 'scale': '0-1', 'mean': list(mean), 'std': list(std),
          'mean_255': [m * 255 for m in mean], 'std_255': [s * 255 for s in std],
          'formula': '(x / 255 - mean) / std', **common}


def torchvision_sidecar(config: ml_collections.ConfigDict, workdir: str,
                        step: int) -> dict:
  """What the weights need beside them: BN epsilon, input normalisation, provenance."""
  return {
      'architecture': 'torchvision.models.resnet50',
      'load': 'model = torchvision.models.resnet50(); model.load_state_dict('
              'safetensors.torch.load_file(PATH), strict=False)  # missing: fc',
      'bn_epsilon': TORCH_BN_EPSILON,
      'trained_bn_epsilon': config.model.bn_epsilon,
      'bn_note': 'running_var = trained variance + (trained_bn_epsilon - bn_epsilon): the '
                 'default eps=1e-5 of nn.BatchNorm2d reproduces the trained normalisation.',
      'features': 'the 2048-d avgpool output (fc = Identity) is ssl_jax\'s pre_logits',
      'compute_dtype': config.model.dtype,
      'input': input_normalization(config),
      'workdir': str(workdir), 'step': int(step),
  }


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict) -> bytes:
  """The safetensors file of ``tensors`` with ``metadata`` (numpy API: no torch needed)."""
  from safetensors import numpy as safetensors_numpy
  return safetensors_numpy.save(tensors, metadata={'format': 'pt',
                                                   'ssl_jax': json.dumps(metadata)})


def inference_function(config: ml_collections.ConfigDict, encoder: flax.linen.Module,
                       variables: dict) -> Callable[[jax.Array], jax.Array]:
  """uint8 images [N, S, S, 3] (already cropped and resized) -> pre_logits [N, D], with
  ``config``'s input scaling and the ``variables`` as constants."""
  variables = jax.tree.map(np.asarray, variables)  # Off the restored devices' shardings.
  represent = encoder_lib.representation(config.input, config.augment.normalize, encoder,
                                         layers=('pre_logits',), max_features=None)
  return lambda images: represent(variables, images)['pre_logits']


def jax_export_bytes(config: ml_collections.ConfigDict, encoder: flax.linen.Module,
                     variables: dict, platforms: Sequence[str]) -> bytes:
  """:func:`inference_function` serialised by jax.export for ``platforms``, with a
  symbolic batch size."""
  size = config.input.image_size
  shape = jax.export.symbolic_shape(f'n, {size}, {size}, 3')
  exported = jax.export.export(jax.jit(inference_function(config, encoder, variables)),
                               platforms=tuple(platforms))(
                                   jax.ShapeDtypeStruct(shape, jnp.uint8))
  return bytes(exported.serialize())


def sidecar_path(output: str) -> str:
  """Where the torchvision export's JSON goes: beside ``output``, ``output + '.json'``."""
  return f'{output}.json'


def export(workdir: str, fmt: str, output: str,
           platforms: Sequence[str] = ('cpu', 'cuda', 'tpu')) -> list[str]:
  """Writes the encoder of ``workdir``'s newest checkpoint to ``output`` in ``fmt``;
  returns the paths written."""
  if fmt not in FORMATS:
    raise ValueError(f'--format={fmt!r}: use one of {", ".join(FORMATS)}.')
  config = encoder_lib.read_config(workdir)
  if fmt == 'torchvision':
    check_torchvision_resnet50(config.model)  # Before the (slow) restore.
  restored = encoder_lib.restore(workdir)
  if fmt == 'npz':
    files.write_bytes(output, npz_bytes(restored.variables, config))
    return [output]
  if fmt == 'jax_export':
    files.write_bytes(output, jax_export_bytes(config, restored.encoder, restored.variables,
                                               platforms))
    return [output]
  sidecar = torchvision_sidecar(config, workdir, restored.step)
  tensors = torchvision_state_dict(restored.variables, config.model.bn_epsilon)
  files.write_bytes(output, safetensors_bytes(tensors, sidecar))
  files.write_text(sidecar_path(output), json.dumps(sidecar, indent=2))
  return [output, sidecar_path(output)]


def define_flags() -> None:
  """The command's flags; defined only when run as a command, so that importing this
  module beside ssl_jax.main (which has a --workdir too) defines nothing."""
  flags.DEFINE_string('workdir', None, 'The run to export (its newest checkpoint).')
  flags.DEFINE_enum('format', None, FORMATS, 'npz, torchvision or jax_export.')
  flags.DEFINE_string('output', None, 'The file to write (a path or gs:// URL).')
  flags.DEFINE_list('platforms', ['cpu', 'cuda', 'tpu'], 'jax_export: the platforms the '
                    'function is lowered for (cpu, cuda, rocm, tpu).')
  flags.mark_flags_as_required(['workdir', 'format', 'output'])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  values = flags.FLAGS
  logging.set_verbosity(logging.WARNING)  # Orbax's INFO lines say nothing to a user here.
  try:
    written = export(values.workdir, values.format, values.output, values.platforms)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f'ssl_jax.export: {type(e).__name__}: {e}')
  print('Wrote ' + ', '.join(written))


if __name__ == '__main__':
  define_flags()
  app.run(main)
