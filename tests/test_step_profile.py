"""step_profile (benchmark --profile): HLO instructions named by their JAX name stack,
self times from a trace, and a traced jitted step whose ops land in the right parts."""

import gzip
import json
import os

import jax
import jax.numpy as jnp

from ssl_jax import step_profile


def _write_trace(logdir, events):
  folder = os.path.join(logdir, 'plugins', 'profile', '2026_01_01')
  os.makedirs(folder)
  with gzip.open(os.path.join(folder, 'host.perfetto_trace.json.gz'), 'wt') as f:
    json.dump({'traceEvents': events}, f)


def test_self_times_subtract_nested_events(tmp_path):
  """A while loop of 10 us holding two 3 us ops: the loop's own time is 4 us."""
  x = lambda name, ts, dur, tid=1: {'ph': 'X', 'pid': 1, 'tid': tid, 'ts': ts,  # noqa: E731
                                     'dur': dur, 'name': name}
  _write_trace(str(tmp_path), [x('while.1', 0, 10), x('fusion.2', 1, 3), x('fusion.2', 5, 3),
                               x('fusion.3', 20, 2), x('fusion.3', 0, 1, tid=2)])
  assert step_profile.trace_self_times(str(tmp_path)) == {'while.1': 4, 'fusion.2': 6,
                                                       'fusion.3': 3}


def test_device_events_replace_host_launches(tmp_path):
  events = [{'ph': 'M', 'pid': 7, 'name': 'process_name', 'args': {'name': '/device:GPU:0'}},
            {'ph': 'X', 'pid': 7, 'tid': 1, 'ts': 0, 'dur': 5, 'name': 'loop_fusion_2',
             'args': {'hlo_op': 'fusion.2'}},
            {'ph': 'X', 'pid': 1, 'tid': 1, 'ts': 0, 'dur': 1, 'name': 'fusion.2'}]
  _write_trace(str(tmp_path), events)
  assert step_profile.trace_self_times(str(tmp_path)) == {'fusion.2': 5}


def test_profile_names_the_parts_of_a_traced_step(tmp_path):
  """A jitted step with an 'augment' scope, a 'batch_norm' scope and a matmul: every part
  gets time, and the cost analysis counts the matmul's flops."""
  def step(state, x):
    with jax.named_scope('augment'):
      x = jnp.clip(jnp.sin(x) * 1.5, 0.0, 1.0)
    with jax.named_scope('batch_norm'):
      x = (x - x.mean(0)) * jax.lax.rsqrt(x.var(0) + 1e-3)
    return state + 1, x @ x.T

  x = jnp.ones((256, 256))
  compiled = jax.jit(step).lower(jnp.zeros(()), x).compile()
  names = step_profile.hlo_op_names(compiled.as_text())
  assert any('augment/' in op_name for _, op_name in names.values())
  cost, ops = step_profile.profile_step(compiled, jnp.zeros(()), x, steps=2,
                                     logdir=str(tmp_path))
  assert cost['flops'] >= 2 * 256 ** 3
  parts = {step_profile.part_of(op_name) for _, op_name, micros in ops.values() if micros > 0}
  assert {'augmentation', 'BatchNorm', 'matmul'} <= parts
