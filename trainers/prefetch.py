"""Batches prepared ahead of the train step: a background thread reads and places the next batches on the devices.

    batches = DevicePrefetcher(produce, depth=2)   # produce() -> (device batch, data position after it)
    for _ in range(steps):
        batch, position = next(batches)            # ready unless the input pipeline is slower than the step
    batches.close()

While the devices run step n, the thread reads batch n+1 (and n+2) from the input pipeline and transfers it, so the
step loop only waits for input when the pipeline itself is the bottleneck. `wait_seconds` counts that waiting.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any


class DevicePrefetcher:
    """Calls `produce()` in a background thread, keeping up to `depth` results ready, in order.

    `produce` returns anything (typically `(device batch, data position after it)`); an exception raised by it is
    re-raised by the `next()` that would have returned its result. `close()` stops the thread (results not yet taken
    are dropped). Not thread-safe on the consumer side: one consumer.
    """

    def __init__(self, produce: Callable[[], Any], depth: int = 2):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}.")
        self._produce = produce
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.wait_seconds = 0.0  # time `next()` spent waiting for a result
        self._thread = threading.Thread(target=self._run, name="device-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = (True, self._produce())
            except BaseException as e:  # handed to the consumer
                self._put((False, e))
                return
            if not self._put(item):
                return

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> Any:
        if self._stop.is_set():
            raise StopIteration
        start = time.perf_counter()
        ok, value = self._queue.get()
        self.wait_seconds += time.perf_counter() - start
        if not ok:
            self._stop.set()
            raise value
        return value

    def close(self) -> None:
        """Stops the background thread and drops the results not taken."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)

    def __enter__(self) -> DevicePrefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
