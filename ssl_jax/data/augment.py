"""Pixel augmentation on the accelerator, inside the jitted step.

Every op takes one float image [H, W, 3] in [0, 1] and its own PRNG key, so a batch is
augmented with ``jax.vmap`` over per-image keys; the result does not depend on how the
batch is sharded (threefry keys are partitionable).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import config_lib


def config() -> ml_collections.ConfigDict:
  """The ``augment`` section: device-side pixel augmentation, after the host crops.

  The Revisiting tasks use slim's Inception colour distortion (``inception_*``); the
  contrastive views (SimCLR, MoCo, BYOL; reference contrastive.md §1.3, §2.3, §3) the
  rest, one key per image and view. Defaults: SimCLR v2 at strength s=1.
  """
  c = ml_collections.ConfigDict()
  c.inception_brightness = 32.0 / 255.0  # Max additive delta; 0 disables.
  c.inception_saturation = (0.5, 1.5)  # Multiplicative range; (1, 1) disables.
  c.jitter_prob = 0.8  # Colour jitter (random order, clip after each op).
  c.brightness = 0.8  # 0.8s; multiplicative U[1-b, 1+b] or additive U[-b, b].
  c.brightness_mode = 'multiplicative'  # SimCLR v2; 'additive': v1, BYOL.
  c.contrast = 0.8  # x U[1-c, 1+c] about the per-channel mean.
  c.saturation = 0.8  # x U[1-s, 1+s].
  c.hue = 0.2  # + U[-h, h] turns.
  c.grayscale_prob = 0.2
  c.grayscale_first = False  # MoCo v1 (InstDisc): grayscale before the jitter.
  c.blur_prob = (0.5, 0.5)  # Per view (views >= 2 take the second); BYOL (1.0, 0.1).
  c.blur_sigma = (0.1, 2.0)  # sigma ~ U[lo, hi] in pixels.
  c.blur_per = 'image'  # 'image' (BYOL, MoCo) or 'batch' (SimCLR's code).
  c.solarize_prob = (0.0, 0.0)  # Per view; BYOL (0.0, 0.2).
  # Network input, in pretraining and evaluation: 'symmetric' [-1, 1] (the Revisiting
  # models), 'unit' [0, 1] (SimCLR) or 'imagenet' mean/std (MoCo, BYOL).
  c.normalize = 'symmetric'
  return c


def validate(aug: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field and the fix."""
  config_lib.check_choice(aug, 'augment', 'brightness_mode', ('multiplicative', 'additive'))
  config_lib.check_choice(aug, 'augment', 'blur_per', ('image', 'batch'))
  config_lib.check_choice(aug, 'augment', 'normalize', ('unit', 'imagenet', 'symmetric'))
  for name in ('blur_prob', 'solarize_prob'):
    if len(aug[name]) != 2:
      raise ValueError(f'augment.{name} holds one probability per view: (view 1, view 2).')


def to_unit(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def to_model_input(images: jax.Array) -> jax.Array:
  """float [0, 1] -> [-1, 1], the input range of the Revisiting models."""
  return images * 2.0 - 1.0


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
  """RGB in [0, 1] to HSV in [0, 1] (hue as a fraction of a turn), as tf.image does."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = rgb.max(-1)
  delta = value - rgb.min(-1)
  safe_delta = jnp.where(delta > 0, delta, 1.0)
  saturation = jnp.where(value > 0, delta / jnp.where(value > 0, value, 1.0), 0.0)
  # The max channel is picked by comparing the channels with each other, not by
  # ``value == r``: XLA may recompute r inside another fusion with different rounding than
  # the materialised max, and an equality test then falls through to the wrong formula
  # (seen under a sharded jit). At ties both formulas give the same hue.
  r_max = (r >= g) & (r >= b)
  g_max = g >= b
  hue = jnp.where(r_max, (g - b) / safe_delta,
                  jnp.where(g_max, 2.0 + (b - r) / safe_delta, 4.0 + (r - g) / safe_delta))
  hue = jnp.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
  return jnp.stack([hue, saturation, value], -1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """Inverse of :func:`rgb_to_hsv`."""
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  # Standard piecewise-linear form: channel n takes v - v*s*clip(min(k, 4-k), 0, 1).
  def channel(n):
    k = (n + h * 6.0) % 6.0
    return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
  return jnp.stack([channel(5.0), channel(3.0), channel(1.0)], -1)


def adjust_brightness(image: jax.Array, delta: jax.Array) -> jax.Array:
  """Adds ``delta`` to every pixel (tf.image.adjust_brightness)."""
  return image + delta


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
  """Scales HSV saturation by ``factor`` (tf.image.adjust_saturation)."""
  hsv = rgb_to_hsv(jnp.clip(image, 0.0, 1.0))
  hsv = hsv.at[..., 1].set(jnp.clip(hsv[..., 1] * factor, 0.0, 1.0))
  return hsv_to_rgb(hsv)


def brightness_saturation(image: jax.Array, key: jax.Array, brightness: float,
                          saturation: tuple[float, float]) -> jax.Array:
  """The Revisiting colour jitter (slim Inception, fast mode; reference §2.1): brightness
  +-``brightness`` and saturation in ``saturation``, brightness first with probability
  1/4 (selector 0 of 4), then clipped to [0, 1].

  Both orders need one saturation each, so it is computed once, on the input of the
  order drawn (brightened and clipped, or not), and the brightness is added after it in
  the other order: one HSV round trip per image rather than one per order, with the
  outputs of the two-branch form."""
  k_order, k_bright, k_sat = jax.random.split(key, 3)
  delta = jax.random.uniform(k_bright, (), minval=-brightness, maxval=brightness)
  factor = jax.random.uniform(k_sat, (), minval=saturation[0], maxval=saturation[1])
  brightness_first = jax.random.randint(k_order, (), 0, 4) == 0
  saturated = adjust_saturation(
      jnp.where(brightness_first, jnp.clip(adjust_brightness(image, delta), 0, 1), image),
      factor)
  return jnp.clip(jnp.where(brightness_first, saturated,
                            adjust_brightness(saturated, delta)), 0.0, 1.0)


def batch_brightness_saturation(images: jax.Array, key: jax.Array, brightness: float,
                                saturation: tuple[float, float]) -> jax.Array:
  """:func:`brightness_saturation` on a batch [N, H, W, 3], one key per image."""
  with jax.named_scope('augment'):  # Names the ops in a profile (ssl_jax.benchmark).
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(brightness_saturation, in_axes=(0, 0, None, None))(
        images, keys, brightness, tuple(saturation))


def rgb_to_grayscale(image: jax.Array) -> jax.Array:
  """Luma with tf.image.rgb_to_grayscale's weights, tiled back to 3 channels."""
  luma = image @ jnp.asarray([0.2989, 0.5870, 0.1140], image.dtype)
  return jnp.repeat(luma[..., None], 3, axis=-1)


def mean_grayscale(image: jax.Array) -> jax.Array:
  """The Revisiting code's grey: the RGB mean tiled back to 3 channels (preprocess.py:
  204-208 get_to_gray_preprocess), for any value scale."""
  return jnp.broadcast_to(image.mean(-1, keepdims=True), image.shape)


def standardize(x: jax.Array, axes: tuple[int, ...] = (-3, -2, -1)) -> jax.Array:
  """tf.image.per_image_standardization over ``axes``: (x - mean) / max(std, 1/sqrt(N)),
  N the number of values standardised together (Revisiting §2: per image or patch)."""
  n = 1
  for a in axes:
    n *= x.shape[a]
  mean = x.mean(axes, keepdims=True)
  std = jnp.sqrt(jnp.square(x - mean).mean(axes, keepdims=True))
  return (x - mean) / jnp.maximum(std, 1.0 / jnp.sqrt(float(n)))


# --- Contrastive views: SimCLR v1/v2, MoCo v1/v2, BYOL (reference contrastive.md §1.3,
# §2.3, §3). The random resized crop and the flip run on the host; everything below runs
# on the device, one key per (image, view).

# ImageNet channel statistics of torchvision / MoCo's main_moco.py and BYOL's forward pass.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
  """(x - mean) * factor + mean, the mean per channel over the image
  (tf.image.adjust_contrast; no clipping, as in TF)."""
  mean = image.mean((-3, -2), keepdims=True)
  return (image - mean) * factor + mean


def adjust_hue(image: jax.Array, delta: jax.Array) -> jax.Array:
  """Rotates the HSV hue by ``delta`` turns (tf.image.adjust_hue); the input should lie
  in [0, 1], where the output stays."""
  hsv = rgb_to_hsv(image)
  # Floor modulo keeps the hue in [0, 1) for negative deltas too.
  hsv = hsv.at[..., 0].set((hsv[..., 0] + delta) % 1.0)
  return hsv_to_rgb(hsv)


def brightness_value(key: jax.Array, strength: float, mode: str) -> jax.Array:
  """The random value of :func:`random_brightness`: a factor U[max(1-s, 0), 1+s]
  ('multiplicative') or a delta U[-s, s] ('additive')."""
  if mode == 'multiplicative':
    return jax.random.uniform(key, (), minval=max(1.0 - strength, 0.0),
                              maxval=1.0 + strength)
  if mode == 'additive':
    return jax.random.uniform(key, (), minval=-strength, maxval=strength)
  raise ValueError(f'Unknown brightness mode {mode!r}: multiplicative or additive.')


def apply_brightness(image: jax.Array, value: jax.Array, mode: str) -> jax.Array:
  """image x value ('multiplicative') or image + value ('additive'), clipped to [0, 1]."""
  out = image * value if mode == 'multiplicative' else adjust_brightness(image, value)
  # The jitter clips after every op (SimCLR's color_jitter_rand); clipping here too keeps
  # the op a valid image on its own and changes nothing inside the jitter.
  return jnp.clip(out, 0.0, 1.0)


def random_brightness(image: jax.Array, key: jax.Array, strength: float,
                      mode: str = 'multiplicative') -> jax.Array:
  """Random brightness, clipped to [0, 1]: 'multiplicative' x * U[max(1-s, 0), 1+s]
  (SimCLR v2's code default since Aug 2020) or 'additive' x + U[-s, s] (SimCLR v1 /
  tf.image.random_brightness, BYOL). Strength 0 is the identity."""
  return apply_brightness(image, brightness_value(key, strength, mode), mode)


def color_jitter(image: jax.Array, key: jax.Array, brightness: float, contrast: float,
                 saturation: float, hue: float,
                 brightness_mode: str = 'multiplicative') -> jax.Array:
  """SimCLR's color_jitter_rand (reference §1.3) and BYOL's color_transform (§3):
  brightness, contrast x U[1-c, 1+c], saturation x U[1-s, 1+s] and hue + U[-h, h] turns
  in a random order drawn per image, with a clip to [0, 1] after each op. The strengths
  are python floats (static config); an op of strength 0 is skipped (only the clip after
  its place in the order remains), as in both codes.

  The order is a permutation of the four op indices; step i of a ``fori_loop`` applies op
  order[i]. A per-image op under ``vmap`` is a select between the candidates, all of
  which are computed, so a step computes one RGB candidate (brightness or contrast, both
  cheap) and one HSV round trip that serves saturation and hue alike (the saturation
  scaled or the hue turned, whichever the step applies): half the HSV work of a select
  over the four ops, with their outputs. Every op's random value is drawn up front from
  its own key, so it does not depend on the op's position in the order.
  """
  k_perm, k_bright, k_contrast, k_sat, k_hue = jax.random.split(key, 5)
  # tf.image.random_contrast / random_saturation require lower >= 0: floor at 0 for s > 1.
  b_value = brightness_value(k_bright, brightness, brightness_mode)
  c_factor = jax.random.uniform(k_contrast, (), minval=max(1.0 - contrast, 0.0),
                                maxval=1.0 + contrast)
  s_factor = jax.random.uniform(k_sat, (), minval=max(1.0 - saturation, 0.0),
                                maxval=1.0 + saturation)
  h_delta = jax.random.uniform(k_hue, (), minval=-hue, maxval=hue)
  if not (brightness or contrast or saturation or hue):
    return jnp.clip(image, 0.0, 1.0)
  order = jax.random.permutation(k_perm, 4)

  def rgb_op(x: jax.Array, op: jax.Array) -> jax.Array:
    """Brightness (op 0) or contrast (op 1); x for any other op."""
    if brightness:
      x = jnp.where(op == 0, apply_brightness(x, b_value, brightness_mode), x)
    if contrast:
      x = jnp.where(op == 1, adjust_contrast(x, c_factor), x)
    return x

  def hsv_op(x: jax.Array, is_sat: jax.Array, is_hue: jax.Array) -> jax.Array:
    """adjust_saturation (is_sat) or adjust_hue (is_hue) in one HSV round trip."""
    # adjust_saturation clips its input; adjust_hue does not.
    hsv = rgb_to_hsv(jnp.where(is_sat, jnp.clip(x, 0.0, 1.0), x))
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    h = jnp.where(is_hue, (h + h_delta) % 1.0, h)
    s = jnp.where(is_sat, jnp.clip(s * s_factor, 0.0, 1.0), s)
    return hsv_to_rgb(jnp.stack([h, s, v], -1))

  never = jnp.zeros((), bool)

  def step(i: jax.Array, x: jax.Array) -> jax.Array:
    op = order[i]
    y = rgb_op(x, op)
    if saturation or hue:  # Ops of strength 0 are skipped: never selected.
      is_sat = op == 2 if saturation else never
      is_hue = op == 3 if hue else never
      y = jnp.where(is_sat | is_hue, hsv_op(x, is_sat, is_hue), y)
    return jnp.clip(y, 0.0, 1.0)

  return jax.lax.fori_loop(0, 4, step, image)


def random_grayscale(image: jax.Array, key: jax.Array, prob: float) -> jax.Array:
  """:func:`rgb_to_grayscale` with probability ``prob`` (SimCLR, MoCo, BYOL: 0.2)."""
  return jnp.where(jax.random.bernoulli(key, prob), rgb_to_grayscale(image), image)


def blur_kernel_size(image_size: int) -> int:
  """Taps of the Gaussian blur for an image side: SimCLR passes kernel_size =
  image_size // 10 (22 at 224) and uses radius = kernel_size // 2 (11), i.e.
  2 * (image_size // 20) + 1 taps (23 at 224; BYOL's 23). Below 20 px: 1 tap (identity)."""
  return 2 * (image_size // 20) + 1


def gaussian_blur(image: jax.Array, sigma: jax.Array, kernel_size: int) -> jax.Array:
  """Separable Gaussian blur of one image [H, W, C] with a normalised kernel of
  ``kernel_size`` taps (radius kernel_size // 2, as SimCLR's gaussian_blur: an even size
  rounds up to the next odd one); ``sigma`` (pixels) may be traced.

  Border: reflect padding, so a constant image stays constant. SimCLR's TF code and BYOL
  pad with zeros ('SAME' depthwise conv), which darkens a radius-wide border; MoCo v2
  blurs with PIL's ImageFilter.GaussianBlur, which extends the edge pixels. We choose
  reflect: like PIL it adds no dark frame.

  The convolution is a sum of shifted slices rather than ``lax.conv``: it is exact float32
  on every backend (TPU and GPU convolutions may run f32 in bf16 / TF32) and a per-image
  sigma under ``vmap`` stays elementwise.
  """
  radius = kernel_size // 2
  if radius == 0:
    return image
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  # Floor sigma so that sigma -> 0 gives the identity kernel instead of 0/0.
  sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-6)
  weights = jnp.exp(-jnp.square(taps) / (2.0 * jnp.square(sigma)))
  weights = weights / weights.sum()

  def blur_axis(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad, mode='reflect')
    n = x.shape[axis]
    out = weights[0] * jax.lax.slice_in_dim(padded, 0, n, axis=axis)
    for k in range(1, 2 * radius + 1):
      out = out + weights[k] * jax.lax.slice_in_dim(padded, k, k + n, axis=axis)
    return out

  return blur_axis(blur_axis(image, -3), -2)


def solarize(image: jax.Array, threshold: float = 0.5) -> jax.Array:
  """x if x < threshold else 1 - x (BYOL's augmentations.py; reference §3)."""
  return jnp.where(image < threshold, image, 1.0 - image)


def normalize(image: jax.Array, mode: str) -> jax.Array:
  """Network input from [0, 1]: 'unit' unchanged (SimCLR, §1.2), 'imagenet' (x - mean) /
  std with the ImageNet statistics (MoCo, BYOL; §7.2) or 'symmetric' 2x - 1 (the
  Revisiting models)."""
  if mode == 'unit':
    return image
  if mode == 'imagenet':
    mean = jnp.asarray(IMAGENET_MEAN, image.dtype)
    std = jnp.asarray(IMAGENET_STD, image.dtype)
    return (image - mean) / std
  if mode == 'symmetric':
    return to_model_input(image)
  raise ValueError(f'Unknown normalize mode {mode!r}: unit, imagenet or symmetric.')


def _maybe_apply(fn, image: jax.Array, key: jax.Array, prob: float) -> jax.Array:
  """fn(image) with probability ``prob`` (SimCLR's random_apply, BYOL's _maybe_apply),
  selected with jnp.where; a python probability of 0 or 1 is resolved statically."""
  if prob <= 0:
    return image
  if prob >= 1:
    return fn(image)
  return jnp.where(jax.random.bernoulli(key, prob), fn(image), image)


def contrastive_view(image: jax.Array, key: jax.Array, aug: ml_collections.ConfigDict,
                     view: int,
                     blur_sigma: jax.Array | None = None) -> jax.Array:
  """One view's device augmentation of one float image [H, W, 3] in [0, 1] after the
  host crop and flip, following the ``augment`` section ``aug``:

  colour jitter with probability jitter_prob (random order, clip after each op), then
  grayscale with probability grayscale_prob (with grayscale_first: grayscale, then the
  jitter, MoCo v1 / InstDisc's order, §2.3), Gaussian blur with probability
  blur_prob[view], solarisation with probability solarize_prob[view], clip to [0, 1] and
  :func:`normalize`. This is SimCLR's preprocess_for_train + random_blur (§1.3), MoCo v2's
  aug+ (§2.3) and BYOL's asymmetric table (§3), depending on the config.

  ``view`` is the view's index (0: the first view); an index >= 2 uses view index 1's
  probabilities. The blur's sigma ~ U[blur_sigma range] is drawn per image, or is the given
  batch-level ``blur_sigma`` when augment.blur_per == 'batch' (SimCLR's code draws one
  sigma per batch and view; see :func:`contrastive_views`).
  """
  v = min(view, 1)
  if aug.blur_per == 'batch' and blur_sigma is None:
    raise ValueError("augment.blur_per == 'batch' needs the batch-level blur_sigma.")
  if aug.blur_per == 'image' and blur_sigma is not None:
    raise ValueError("augment.blur_per == 'image' draws sigma per image; got blur_sigma.")
  k_jitter_apply, k_jitter, k_gray, k_blur_apply, k_sigma, k_solarize = (
      jax.random.split(key, 6))

  def jitter(x):
    return color_jitter(x, k_jitter, aug.brightness, aug.contrast, aug.saturation,
                        aug.hue, aug.brightness_mode)

  x = image
  if aug.grayscale_first:
    x = random_grayscale(x, k_gray, aug.grayscale_prob)
  x = _maybe_apply(jitter, x, k_jitter_apply, aug.jitter_prob)
  if not aug.grayscale_first:
    x = random_grayscale(x, k_gray, aug.grayscale_prob)
  # SimCLR clips after the grayscale; the luma weights sum to 0.9999, so it only matters
  # for inputs that were outside [0, 1].
  x = jnp.clip(x, 0.0, 1.0)

  if aug.blur_prob[v] > 0:
    if blur_sigma is None:
      lo, hi = aug.blur_sigma
      blur_sigma = jax.random.uniform(k_sigma, (), minval=lo, maxval=hi)
    kernel_size = blur_kernel_size(image.shape[-3])
    x = _maybe_apply(lambda y: gaussian_blur(y, blur_sigma, kernel_size), x,
                     k_blur_apply, aug.blur_prob[v])
  x = _maybe_apply(solarize, x, k_solarize, aug.solarize_prob[v])
  return normalize(jnp.clip(x, 0.0, 1.0), aug.normalize)


def contrastive_views(images: jax.Array, key: jax.Array, aug: ml_collections.ConfigDict,
                      first_view: int = 0) -> jax.Array:
  """Device augmentation of a batch of host-cropped views: uint8 [B, V, H, W, 3] (V views
  per image: 2 for the contrastive methods, 1 for a single augmented view, e.g. supervised
  training) -> float32 [B, V, H, W, 3], each view by :func:`contrastive_view`.

  Image b's view v uses the key fold_in(split(key_images, B)[b], v): one independent key
  per (image, view), fixed by the image's position in the global batch, so the result does
  not depend on how the batch is sharded. With augment.blur_per == 'batch', one sigma per
  view is shared by the whole (global) batch, as in SimCLR's code. ``first_view`` is the
  index of the first of these views (multi-crop: the small crops follow the two large ones,
  and take the second view's probabilities).
  """
  num_images, num_views = images.shape[:2]
  if num_views < 1:
    raise ValueError('contrastive_views needs at least one view per image.')
  with jax.named_scope('augment'):  # Names the ops in a profile (ssl_jax.benchmark).
    k_images, k_sigma = jax.random.split(key)
    image_keys = jax.random.split(k_images, num_images)
    x = to_unit(images)
    if aug.blur_per == 'batch':
      lo, hi = aug.blur_sigma
      if first_view:  # Small crops draw their own sigmas.
        k_sigma = jax.random.fold_in(k_sigma, first_view)
      sigmas = jax.random.uniform(k_sigma, (num_views,), minval=lo, maxval=hi)
    views = []
    for i in range(num_views):
      v = first_view + i  # Static: picks the probabilities.
      keys = jax.vmap(lambda k, v=v: jax.random.fold_in(k, v))(image_keys)
      sigma = sigmas[i] if aug.blur_per == 'batch' else None
      views.append(jax.vmap(
          lambda image, k, v=v, sigma=sigma: contrastive_view(image, k, aug, v, sigma))(
              x[:, i], keys))
    return jnp.stack(views, axis=1)
