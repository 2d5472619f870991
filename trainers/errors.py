"""How a run ends badly: the diverged-training error, the CLI's exit codes, and errors as one-line messages."""

from __future__ import annotations

EXIT_CONFIG_ERROR = 2
EXIT_DIVERGED = 1
EXIT_PREEMPTED = 143


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/Inf."""


def one_line(e: BaseException) -> str:
    """The message of `e` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(e).split())
