"""The train loop's device prefetcher: batches come in order, ahead of the step, and failures reach the loop."""

import threading
import time

import pytest

from trainers.prefetch import DevicePrefetcher


def _counter(limit=None, fail_at=None):
    produced = []

    def produce():
        if fail_at is not None and len(produced) == fail_at:
            raise ValueError("corrupt record")
        if limit is not None and len(produced) == limit:
            raise StopIteration
        produced.append(len(produced))
        return produced[-1]

    return produce, produced


def _wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_batches_arrive_in_order_and_are_prepared_ahead_while_the_step_runs():
    produce, produced = _counter()
    with DevicePrefetcher(produce, depth=2) as batches:
        assert next(batches) == 0
        # While the loop works on batch 0, batches 1 and 2 are made (and a third waits for room): nothing more.
        assert _wait_until(lambda: len(produced) >= 3)
        time.sleep(0.2)
        assert len(produced) <= 4
        assert [next(batches) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert not any(t.name == "device-prefetch" and t.is_alive() for t in threading.enumerate())


def test_a_pipeline_error_is_raised_by_the_next_that_would_return_its_batch():
    produce, _ = _counter(fail_at=3)
    batches = DevicePrefetcher(produce, depth=2)
    assert [next(batches) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="corrupt record"):
        next(batches)
    batches.close()


def test_a_finite_pipeline_ends_the_iteration():
    produce, _ = _counter(limit=4)
    with DevicePrefetcher(produce, depth=3) as batches:
        assert list(batches) == [0, 1, 2, 3]


def test_waiting_time_counts_only_a_slow_pipeline():
    def slow():
        time.sleep(0.05)
        return 1

    with DevicePrefetcher(slow, depth=1) as batches:
        for _ in range(4):
            next(batches)
        assert batches.wait_seconds > 0.1  # the loop did nothing else: it waited for every batch
    with pytest.raises(ValueError, match="depth"):
        DevicePrefetcher(slow, depth=0)
