"""The profile of a compiled train step: its ops' self times from a ``jax.profiler``
trace, each named by the JAX name stack it came from (the HLO metadata), summed into the
parts of the step, and XLA's cost analysis. ``python -m ssl_jax.benchmark --profile=DIR``
prints it; benchmarks/profile_steps.sh runs it per task.
"""

from __future__ import annotations

import collections
import gzip
import json
import re

import jax

from ssl_jax import files


# Parts of the step for the profile summary: the first whose words occur in an op's JAX
# name stack (augment.py and layers.BatchNorm open the named scopes 'augment' and
# 'batch_norm'; convolutions and matmuls keep their primitive's name).
PARTS = (('augmentation', ('augment/',)), ('BatchNorm', ('batch_norm/',)),
         ('convolution', ('conv_general_dilated',)), ('matmul', ('dot_general',)))
_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?\b([\w\-]+)\(')
_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+) .*\{$')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r'(?:calls|to_apply|body)=%?([\w.\-]+)')


def hlo_op_names(hlo_text: str) -> dict[str, tuple[str, str]]:
  """{instruction: (opcode, JAX name stack)} of a compiled module's HLO text. A fusion
  without metadata of its own takes the most frequent name stack of the computation it
  calls."""
  own, calls, per_computation = {}, {}, collections.defaultdict(collections.Counter)
  computation = ''
  for line in hlo_text.splitlines():
    header = _COMPUTATION.match(line)
    if header and ' = ' not in line:
      computation = header.group(1)
      continue
    instruction = _INSTRUCTION.match(line)
    if not instruction:
      continue
    name, opcode = instruction.groups()
    op_name = _OP_NAME.search(line)
    op_name = op_name.group(1) if op_name else ''
    own[name] = (opcode, op_name)
    if op_name:
      per_computation[computation][op_name] += 1
    called = _CALLS.search(line)
    if called:
      calls[name] = called.group(1)
  result = {}
  for name, (opcode, op_name) in own.items():
    if not op_name and per_computation[calls.get(name, '')]:
      op_name = per_computation[calls[name]].most_common(1)[0][0]
    result[name] = (opcode, op_name)
  return result


def trace_self_times(logdir: str) -> dict[str, float]:
  """{event name: self time in microseconds} summed over the newest Perfetto trace that
  jax.profiler wrote under ``logdir``: each event's duration less that of the events
  nested in it on the same thread, so an op inside a loop is not counted twice. Where
  the trace has accelerator processes ('/device:...'), only their events count (the
  host's are launches), named by their ``hlo_op`` argument where they carry one; on the
  CPU the ops run on host threads. Tested on the CPU only."""
  # Through the path layer: jax.profiler writes gs:// log directories too.
  paths = sorted(files.Path(logdir).glob('plugins/profile/*/*perfetto_trace.json.gz'),
                 key=str)
  if not paths:
    raise FileNotFoundError(f'No perfetto_trace.json.gz under {logdir}/plugins/profile.')
  events = json.loads(gzip.decompress(paths[-1].read_bytes()))['traceEvents']
  devices = {event['pid'] for event in events
             if event.get('ph') == 'M' and event.get('name') == 'process_name'
             and str(event.get('args', {}).get('name', '')).startswith('/device:')}
  by_thread = collections.defaultdict(list)
  for event in events:
    if event.get('ph') == 'X' and (not devices or event['pid'] in devices):
      name = event.get('args', {}).get('hlo_op', event['name'])
      by_thread[(event['pid'], event['tid'])].append(
          (event['ts'], -event.get('dur', 0.0), name))
  self_times = collections.Counter()
  for thread in by_thread.values():
    stack = []  # (end, name) of the open events.
    for ts, neg_dur, name in sorted(thread):
      while stack and stack[-1][0] <= ts:
        stack.pop()
      if stack:
        self_times[stack[-1][1]] -= -neg_dur
      self_times[name] += -neg_dur
      stack.append((ts - neg_dur, name))
  return dict(self_times)


def profile_step(compiled, state, batch, steps: int, logdir: str) -> tuple[dict, dict]:
  """(XLA cost analysis of the compiled step, {instruction: (opcode, name stack,
  microseconds per step)}) from ``steps`` traced steps of ``compiled`` (a
  ``jit(...).lower(...).compile()``); the times are summed over the devices of this
  process."""
  names = hlo_op_names(compiled.as_text())
  with jax.profiler.trace(logdir, create_perfetto_trace=True):
    for _ in range(steps):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
  times = trace_self_times(logdir)
  ops = {name: names[name] + (micros / steps,) for name, micros in times.items()
         if name in names}
  cost = compiled.cost_analysis()
  return dict(cost[0] if isinstance(cost, list) else cost), ops


def part_of(op_name: str) -> str:
  """The :data:`PARTS` label of a name stack, 'other' if none matches."""
  for part, words in PARTS:
    if any(word in op_name for word in words):
      return part
  return 'other'


def print_profile(cost: dict, ops: dict, top: int, devices: int) -> None:
  """Markdown tables: the cost analysis, the parts of the step and the top ops."""
  total = sum(t for *_, t in ops.values())
  print(f'\nProfile: {total / devices / 1e3:.1f} ms of ops per step and device; XLA cost '
        f'analysis per device: {cost.get("flops", 0) / 1e9:.2f} GFLOP, '
        f'{cost.get("bytes accessed", 0) / 1e9:.2f} GB accessed, '
        f'{cost.get("transcendentals", 0) / 1e6:.2f} M transcendentals')
  parts = collections.Counter()
  for _, op_name, micros in ops.values():
    parts[part_of(op_name)] += micros
  print('| part | ms/step | share |')
  print('|---|---|---|')
  for part, micros in parts.most_common():
    print(f'| {part} | {micros / devices / 1e3:.2f} | {micros / total:.1%} |')
  print('| op | opcode | ms/step | share | name stack |')
  print('|---|---|---|---|---|')
  ranked = sorted(ops.items(), key=lambda item: -item[1][2])[:top]
  for name, (opcode, op_name, micros) in ranked:
    stack = op_name.removeprefix('jit(train_step)/')
    print(f'| {name} | {opcode} | {micros / devices / 1e3:.2f} | {micros / total:.1%} | '
          f'{stack[-90:]} |')
