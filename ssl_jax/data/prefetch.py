"""Batches made ahead by a background thread and put on the devices ahead of the step.

The host pipeline yields numpy batches; :func:`to_devices` pulls them from tf.data in a
thread that keeps ``size`` of them waiting, so the wait for the host pipeline does not
sit between two steps, and hands each to ``put`` (the transfer onto the mesh,
``jax.make_array_from_process_local_data``) ``size`` batches before the step that needs
it, as flax's ``jax_utils.prefetch_to_device`` does: the transfer is asynchronous, so it
overlaps the steps before. ``put`` runs in the caller's thread: JAX is called from one
thread only (a transfer from the background thread racing the main thread's steps
aborted a CPU test process about once in two suite runs). The order is kept.
"""

from __future__ import annotations

import collections
import queue
import threading
from typing import Callable, Iterator, TypeVar

Batch = TypeVar('Batch')
Placed = TypeVar('Placed')

_END = object()  # The source is exhausted.
_POLL_S = 0.1  # How often a blocked producer checks that the consumer still wants batches.
# How long closing the iterator waits for the producer to notice: at most the batch it is
# making. The thread is a daemon, so a producer stuck in its source never blocks exit.
_JOIN_S = 30.0


def to_devices(batches: Iterator[Batch], put: Callable[[Batch], Placed],
               size: int) -> Iterator[Placed]:
  """``put(b)`` for each ``b`` of ``batches``, in order: up to ``size`` batches made ahead
  by a background thread and ``size`` more already put (0: none, ``put`` runs when a
  batch is asked for).

  An exception (the source's or ``put``'s) is raised here, at the batch where it
  happened, with its traceback. Closing the returned generator (``close()``, or dropping
  it) stops the thread: it finishes the batch at hand and exits.
  """
  if size < 0:
    raise ValueError(f'Prefetch size {size} must be >= 0 (dataset.prefetch; 0: none).')
  if size == 0:
    yield from map(put, batches)
    return
  host = _made_ahead(batches, size)
  ahead: collections.deque = collections.deque()  # (placed batch, None) or (None, error).
  ended = False
  try:
    while True:
      while not ended and len(ahead) <= size:  # The next batch and `size` after it.
        try:
          ahead.append((put(next(host)), None))
        except StopIteration:
          ended = True
        except Exception as error:  # noqa: BLE001 - raised at its batch, below.
          ahead.append((None, error))
          ended = True
      if not ahead:
        return
      item, error = ahead.popleft()
      if error is not None:
        raise error
      yield item
  finally:
    host.close()


def _made_ahead(batches: Iterator[Batch], size: int) -> Iterator[Batch]:
  """The items of ``batches``, with up to ``size`` of them made ahead by a thread; its
  exception is raised here at its position."""
  ready: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()
  thread = threading.Thread(target=_produce, args=(batches, ready, stop), daemon=True,
                            name='ssl_jax.prefetch')
  thread.start()
  try:
    while True:
      item, error = ready.get()
      if error is not None:
        raise error
      if item is _END:
        return
      yield item
  finally:
    stop.set()
    thread.join(_JOIN_S)


def _produce(batches: Iterator, ready: queue.Queue, stop: threading.Event) -> None:
  """The thread of :func:`_made_ahead`: (batch, None) items, then (_END, None) or
  (None, exception), until ``stop`` is set."""
  try:
    for batch in batches:
      if not _offer(ready, (batch, None), stop):
        return
    final = (_END, None)
  except BaseException as error:  # noqa: BLE001 - re-raised in the consumer's thread.
    final = (None, error)
  _offer(ready, final, stop)


def _offer(ready: queue.Queue, item: tuple, stop: threading.Event) -> bool:
  """Puts ``item`` once there is room; False (not put) when ``stop`` is set first."""
  while not stop.is_set():
    try:
      ready.put(item, timeout=_POLL_S)
      return True
    except queue.Full:
      continue
  return False
