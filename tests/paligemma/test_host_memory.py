"""The command-line tools run with huge-page malloc where that helps, and leave every other host alone."""

import os
import subprocess
import sys

import pytest

from paligemma import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELPS = host_memory._glibc_version() is not None and host_memory._glibc_version() >= (2, 35)
HELPS = HELPS and host_memory._thp_mode() == "madvise"


@pytest.mark.parametrize(
    "environ, glibc, thp, expected",
    [
        ({}, (2, 36), "madvise", host_memory.TUNABLE),
        (
            {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
            (2, 36),
            "madvise",
            "glibc.malloc.arena_max=2:" + "glibc.malloc.hugetlb=1",
        ),
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, (2, 36), "madvise", None),  # the user's own choice stands
        ({"PALIGEMMA_HUGE_PAGES": "0"}, (2, 36), "madvise", None),
        ({}, (2, 31), "madvise", None),  # glibc before 2.35 has no such tunable
        ({}, None, "madvise", None),  # not glibc
        ({}, (2, 36), "always", None),  # every large mapping already gets huge pages
        ({}, (2, 36), "never", None),
        ({}, (2, 36), None, None),
    ],
)
def test_when_the_tools_restart_with_huge_pages(environ, glibc, thp, expected):
    env = host_memory.environment_with_huge_pages(environ, glibc=glibc, thp_mode=thp)
    if expected is None:
        assert env is None
    else:
        assert env == {**environ, "GLIBC_TUNABLES": expected}


def test_thp_mode_reads_the_selected_mode(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert host_memory._thp_mode(str(path)) == "madvise"
    assert host_memory._thp_mode(str(tmp_path / "absent")) is None


_PROBE = """
import os, resource, sys
from paligemma import host_memory
host_memory.reexec_with_huge_pages()
import jax, jax.numpy as jnp
x = jnp.ones((16_000_000,), jnp.float32)
f = jax.jit(lambda x: x * 2)
f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
f(x).block_until_ready()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(os.environ.get("GLIBC_TUNABLES"), faults, sys.argv[1:])
"""


@pytest.mark.skipif(not HELPS, reason="this host has no glibc 2.35+ with transparent huge pages in madvise mode")
def test_a_program_restarts_itself_and_its_fresh_buffers_fault_per_huge_page():
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_memory.OPT_OUT)}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "--flag", "a b"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=2)
    tunables, faults, argv = out
    assert tunables == host_memory.TUNABLE
    assert argv.strip() == "['--flag', 'a b']"  # the same arguments, again
    # A fresh 64 MB result is 15,625 pages of 4 KiB; in 2 MiB pages it is 31.
    assert int(faults) < 2_000

    env[host_memory.OPT_OUT] = "0"
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    tunables, faults, _ = out.stdout.split(maxsplit=2)
    assert tunables == "None" and int(faults) > 15_000
