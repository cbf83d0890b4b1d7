"""notebooks/ssl_jax_colab: its .ipynb and jupytext .py agree, and it runs headless on a
CPU with tiny parameters (injected after its ``parameters`` cell, as papermill does)."""

import json
import os

import jupytext
import nbclient
import nbformat

import conftest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'notebooks', 'ssl_jax_colab.ipynb')
SCRIPT = os.path.join(REPO, 'notebooks', 'ssl_jax_colab.py')

# tests/tiny.py's sizes for the SimCLR run; the install cell is skipped.
TINY = {
    'INSTALL': False, 'TOTAL_STEPS': 4,
    'OVERRIDES': {'model.k': 0.125, 'model.units': (1, 1, 1, 1), 'input.image_size': 16,
                  'batch_size': 16, 'eval_batch_size': 64, 'log_every': 1,
                  'checkpoint_every': 2, 'evals.knn.every': 2,
                  'evals.knn.max_train_examples': 500, 'evals.lbfgs.num_train_examples': 500,
                  'evals.lbfgs.max_iter': 100, 'evals.lbfgs.l2_grid': (1e-3, 1e-1)},
    'VIEW_CONFIGS': ('rotation_resnet50', 'simclr_resnet50'),
    'VIEW_IMAGES': 4,
}


def _cells(notebook):
  return [(c.cell_type, c.source, c.metadata.get('tags', [])) for c in notebook.cells]


def test_ipynb_and_jupytext_script_are_in_sync():
  """Edit either, then `jupytext --sync notebooks/ssl_jax_colab.ipynb`."""
  ipynb = jupytext.read(NOTEBOOK)
  script = jupytext.read(SCRIPT)
  assert _cells(ipynb) == _cells(script)
  assert ipynb.metadata['accelerator'] == 'TPU'
  assert not any(c.get('outputs') for c in nbformat.read(NOTEBOOK, 4).cells)


def _with_parameters(notebook, parameters):
  """``notebook`` with a cell setting ``parameters`` after its 'parameters' cell."""
  index = next(i for i, c in enumerate(notebook.cells)
               if 'parameters' in c.metadata.get('tags', []))
  source = '\n'.join(f'{name} = {value!r}' for name, value in parameters.items())
  cell = nbformat.v4.new_code_cell(source, metadata={'tags': ['injected-parameters']})
  notebook.cells.insert(index + 1, cell)
  return notebook


def test_notebook_runs_headless_on_cpu(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'run')
  notebook = _with_parameters(nbformat.read(NOTEBOOK, 4), dict(TINY, WORKDIR=workdir))
  # The kernel inherits the environment: one CPU device (the notebook is under test, not
  # the sharding), the test session's TFDS folder and compilation cache.
  monkeypatch.setenv('XLA_FLAGS', conftest.xla_flags(1))
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3', resources={
      'metadata': {'path': os.path.join(REPO, 'notebooks')}}).execute()
  outputs = [o for c in notebook.cells if c.cell_type == 'code' for o in c.outputs]
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'Runtime: CPU' in text and "devices: [CpuDevice(id=0)]" in text
  assert 'train step 4/4 | loss' in text  # The run's progress, shown in the notebook.
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) == 3  # The views grid, the loss and the kNN curves.
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  assert 0 <= results['lbfgs/pre_logits/top1'] <= 1 and results['step'] == 4
  assert f"| knn/pre_logits/top1 | {results['knn/pre_logits/top1']:.4f} |" in text
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    knn_steps = [r['step'] for r in map(json.loads, f) if 'knn/pre_logits/top1' in r]
  assert knn_steps == [2, 4]  # The monitor at step 2, the final evaluation at 4.
  # Plotted before the final evaluation: its evaluation.png would hold that one row.
  for panel in ('loss', 'learning_rate', 'knn'):
    assert os.path.getsize(os.path.join(workdir, 'plots', f'{panel}.png')) > 0
