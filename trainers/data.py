"""This process's training data: its share of each global batch, read ahead onto the devices.

And where a resumed run picks the data up again (`resume_position`), and how many of its texts were cut to fit
text_len (`TrainData.truncation`: the per-example `text_truncated` flag of the pp, counted and removed from the batch
by `datasets.pipeline` before the train step sees it; logged as `truncated_examples` / `truncated_fraction`).
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import numpy as np

from paligemma import sharding
from trainers import prefetch
from trainers import step as step_lib
from trainers.config import ConfigError
from trainers.errors import one_line
from trainers.setup import Setup

log = logging.getLogger("trainers.train")  # every trainer module logs under the program's name


class TrainData:
    """This process's share of the global batch: `data_shards / process_count` pipelines, concatenated.

    Shard s of n is `datasets.pipeline.make_train_iterator(..., process_index=s, process_count=n)`, so the batches
    depend on `data_shards` only, not on how many processes read them.
    """

    def __init__(self, setup: Setup, position: int):
        # TensorFlow (~6 s to import) comes with the data pipeline: imported when a run reads its data, so that
        # `import trainers.train` and the dry run stay free of it.
        from datasets import pipeline

        cfg = setup.cfg
        self.loss_positions = cfg.loss_positions
        self.describe = setup.source.describe()  # kind, name, size: for the run's first lines and data errors
        per_process = setup.data_shards // jax.process_count()
        first = jax.process_index() * per_process
        try:
            self.iterators = [
                pipeline.make_train_iterator(
                    setup.source,
                    cfg.input.pp,
                    batch_size=cfg.input.batch_size // setup.data_shards,
                    shuffle_buffer_size=cfg.input.shuffle_buffer_size,
                    seed=cfg.seed,
                    start_example=position,
                    process_index=shard,
                    process_count=setup.data_shards,
                    prefetch=cfg.input.prefetch,
                    tokenizer=setup.tokenizer_path,
                )
                for shard in range(first, first + per_process)
            ]
        except (ValueError, KeyError, TypeError) as e:  # pp strings are parsed here
            raise ConfigError(f"config.input.pp: {one_line(e)}") from None
        # (examples, truncated) after each batch read, in reading order: batch k is the k-th step since the start.
        self._counts: list[tuple[int, int]] = []
        self._counts_base = 0  # batches dropped from the front of _counts (already reported)
        self._flagged = all(pipeline.TRUNCATION_KEY in it.dataset.element_spec for it in self.iterators)
        self._warned_at = self._warned_count = 0  # the step and count of the last truncation warning
        if not self._flagged:
            log.warning(
                "The training pp emits no `%s` flag (tok_paligemma does): texts cut to fit text_len are not counted.",
                pipeline.TRUNCATION_KEY,
            )

    def first_batch(self) -> dict[str, np.ndarray]:
        """The next batch, with pipeline and pp failures reported as a ConfigError."""
        try:
            batch = next(self)
            step_lib.check_batch(batch)
        except step_lib.LossPositionsError:
            raise
        except Exception as e:  # tf.data errors of every kind
            raise ConfigError(f"config.input (data {self.describe}, pp): {one_line(e)}") from None
        return batch

    def __next__(self) -> dict[str, np.ndarray]:
        parts = [next(it) for it in self.iterators]  # each without `text_truncated`, which it counted
        self._counts.append(
            (sum(it.stats["examples"] for it in self.iterators), sum(it.stats["truncated"] for it in self.iterators))
        )
        batch = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        step_lib.check_loss_positions(batch, self.loss_positions)
        return batch

    def truncation(self, steps: int, step: int | None = None) -> dict[str, float]:
        """`truncated_examples` / `truncated_fraction` of the texts of the first `steps` batches read (this process).

        Counted from the pp's per-example `text_truncated` flag, over this process's batches since the run started
        (or resumed); empty when the pp emits no flag. Logs a warning the first time texts were cut, and again when
        more were cut by the time the step number (`step`, default `steps`) has doubled.
        """
        if not self._flagged or steps <= 0:
            return {}
        index = min(steps, self._counts_base + len(self._counts)) - 1 - self._counts_base
        if index < 0:
            return {}
        examples, truncated = self._counts[index]
        del self._counts[:index]  # steps only grow: earlier counts are never asked for again
        self._counts_base += index
        step = steps if step is None else step
        if truncated and step >= 2 * self._warned_at and truncated != self._warned_count:
            self._warned_at, self._warned_count = max(step, 1), truncated
            log.warning(
                "Text truncated in %d of %d training examples (%.2f%%) by step %d: raise text_len in config.input.pp "
                "(or shorten the prompts); `python -m datasets.inspect` marks them.",
                truncated,
                examples,
                100.0 * truncated / max(examples, 1),
                step,
            )
        return dict(truncated_examples=truncated, truncated_fraction=truncated / max(examples, 1))

    @property
    def position(self) -> int:
        """Examples consumed per shard (the same for every shard)."""
        return self.iterators[0].position


def device_batches(data: TrainData, first_batch: dict[str, np.ndarray], mesh, depth: int) -> prefetch.DevicePrefetcher:
    """`(global device batch, data position after it)` pairs, prepared `depth` steps ahead in a background thread.

    The first batch was read (and checked) before compiling; the position goes with each batch because the
    pipeline runs ahead of the step that a checkpoint records.
    """
    first = [(first_batch, data.position)]

    def produce():
        batch, position = first.pop() if first else (next(data), data.position)
        return sharding.put_batch(batch, mesh), position

    return prefetch.DevicePrefetcher(produce, depth)


def resume_position(meta: dict[str, Any], setup: Setup) -> int:
    """The data position (examples per shard) to resume at from a checkpoint's `meta`, for this run's data shards."""
    position = int(meta["data_position"])
    saved_shards = int(meta.get("data_shards", setup.data_shards))
    if saved_shards != setup.data_shards:
        position = position * saved_shards // setup.data_shards
        log.warning(
            "Resuming with %d data shards instead of %d: the data order differs from the interrupted run "
            "(pin config.input.data_shards to keep it).",
            setup.data_shards,
            saved_shards,
        )
    if int(meta.get("total_steps", setup.total_steps)) != setup.total_steps:
        log.warning(
            "The checkpoint was written by a run of %s steps; this one has %d (the schedule changes).",
            meta["total_steps"],
            setup.total_steps,
        )
    return position
