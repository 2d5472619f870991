"""Host memory on Linux: the command-line tools run with glibc's malloc backed by transparent huge pages.

XLA on CPU gets every output and temporary buffer from malloc. glibc serves a large request with a fresh `mmap` and
gives it back at `free`, so every step of a CPU run touches its large buffers (the gradient of the 257,152-entry
embedding, the logits, the activations) as new memory, and the kernel zero-fills and maps them one 4 KiB page at a
time. On kernels whose transparent huge pages are in `madvise` mode (the common default) the glibc tunable
`glibc.malloc.hugetlb=1` (glibc 2.35 and later) makes malloc ask for 2 MiB pages instead, 512 times fewer faults.
Measured on a 2-core AMD EPYC VM (6.18 kernel, glibc 2.36): writing a fresh 528 MB float32 result took 150 ms
without it and 28 ms with it; the bench-s train step went from 3.56 s to 2.73 s (README, "Benchmarks").

A tunable is read when the process starts, so `reexec_with_huge_pages()` (called by the `__main__` blocks of the
trainer, the evaluator, predict and the benchmarks) starts the same command again with it set. It does nothing
where it cannot help (not Linux, not glibc 2.35+, transparent huge pages `never` or `always`), when the tunable is
already set (the Makefile sets it), or when the environment has PALIGEMMA_HUGE_PAGES=0.
"""

from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "PALIGEMMA_HUGE_PAGES"
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):  # not glibc (macOS, musl)
        return None


def _thp_mode(path: str = THP_MODE_FILE) -> str | None:
    """The selected transparent-huge-page mode ("always", "madvise", "never"), None when unknown."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def environment_with_huge_pages(
    environ: dict[str, str], *, glibc: tuple[int, int] | None, thp_mode: str | None
) -> dict[str, str] | None:
    """The environment to re-execute with (`environ` plus the tunable), or None when re-executing would not help."""
    if environ.get(OPT_OUT, "1") == "0" or glibc is None or glibc < (2, 35) or thp_mode != "madvise":
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in current:
        return None
    return {**environ, "GLIBC_TUNABLES": f"{current}:{TUNABLE}" if current else TUNABLE}


def reexec_with_huge_pages() -> None:
    """Replaces this process by the same command line with huge-page malloc, when that helps (see the module doc).

    Call it first in a program's `__main__` block, before any work: the process is replaced (same interpreter,
    arguments, working directory and environment plus `GLIBC_TUNABLES`), so nothing done before survives.
    """
    if not sys.platform.startswith("linux"):
        return
    env = environment_with_huge_pages(dict(os.environ), glibc=_glibc_version(), thp_mode=_thp_mode())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:  # could not start it again: go on as we are
        return
