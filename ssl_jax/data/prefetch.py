"""Batches put on the devices by a background thread while the step runs.

The host pipeline yields numpy batches; :func:`to_devices` hands each to ``put`` (the
transfer onto the mesh, ``jax.make_array_from_process_local_data``) in a thread that runs
``size`` batches ahead, as flax's ``jax_utils.prefetch_to_device`` and big_vision's
``prefetch_iterator`` keep ``size`` batches in flight. Here the thread also pulls the next
batch from tf.data, so neither the wait for the host pipeline nor the transfer sits
between two steps. The order of the batches is kept.
"""

from __future__ import annotations

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
  """``put(b)`` for each ``b`` of ``batches``, in order, with up to ``size`` of them made
  ahead by a background thread (0: none, ``put`` runs when a batch is asked for).

  An exception in the thread (the source's or ``put``'s) is raised here, at the batch
  where it happened, with its traceback. Closing the returned generator (``close()``,
  or dropping it) stops the thread: it finishes the batch at hand and exits.
  """
  if size < 0:
    raise ValueError(f'Prefetch size {size} must be >= 0 (dataset.prefetch; 0: none).')
  if size == 0:
    yield from map(put, batches)
    return
  ready: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()
  thread = threading.Thread(target=_produce, args=(batches, put, ready, stop), daemon=True,
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


def _produce(batches: Iterator, put: Callable, ready: queue.Queue,
             stop: threading.Event) -> None:
  """The thread of :func:`to_devices`: (placed batch, None) items, then (_END, None) or
  (None, exception), until ``stop`` is set."""
  try:
    for batch in batches:
      if not _offer(ready, (put(batch), None), stop):
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
