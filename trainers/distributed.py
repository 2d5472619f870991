"""Multi-host set-up (`jax.distributed.initialize`) and the host-side collectives of a run."""

from __future__ import annotations

import glob
import os

import jax
import numpy as np
from jax.experimental import multihost_utils


def _on_cloud_tpu_vm() -> bool:
    if os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return True
    return bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))


def initialize_distributed(
    mode: str = "auto",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Calls `jax.distributed.initialize` when asked or on a Cloud TPU VM; returns whether it did.

    mode: "auto" (initialize on a Cloud TPU VM, or when any explicit argument is given), "on" (always; the cluster
    is auto-detected unless the arguments say otherwise), "off" (never). Must run before anything touches devices.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"--multihost must be auto, on or off; got {mode!r}.")
    explicit = {
        k: v
        for k, v in dict(
            coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
        ).items()
        if v is not None
    }
    if mode == "off" or (mode == "auto" and not explicit and not _on_cloud_tpu_vm()):
        return False
    try:
        jax.distributed.initialize(**explicit)
    except (ValueError, RuntimeError) as e:
        raise RuntimeError(
            f"jax.distributed.initialize({explicit or ''}) failed: {e}. On a single machine pass "
            f"--multihost=off; by hand: --coordinator_address, --num_processes, --process_id."
        ) from e
    return True


def any_process(flag: bool) -> bool:
    """True when `flag` is set on any process (a collective: every process must call it)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.max(multihost_utils.process_allgather(np.asarray([int(flag)], np.int32))))


def to_host(x: jax.Array) -> np.ndarray:
    """The whole of `x` as a numpy array on this host (a collective when `x` spans processes)."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
