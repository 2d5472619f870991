"""How a run ends badly: the diverged-training and checkpoint errors, the CLI's exit codes, one-line messages."""

from __future__ import annotations

from paligemma.errors import UserError

EXIT_CONFIG_ERROR = 2
EXIT_DIVERGED = 1
EXIT_CHECKPOINT_FAILED = 3
EXIT_INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C), after saving a checkpoint
EXIT_PREEMPTED = 143  # stopped by SIGTERM, after saving a checkpoint

EXIT_CODE_OF_SIGNAL = {2: EXIT_INTERRUPTED, 15: EXIT_PREEMPTED}  # signal.SIGINT, signal.SIGTERM


class TrainingDiverged(RuntimeError):
    """The loss, the gradient norm, the updated parameters or the optimizer state became NaN/Inf."""


class CheckpointFailed(UserError, RuntimeError):
    """Saving or restoring a checkpoint failed; the run stopped at once (the message names the last good step)."""

    exit_code = EXIT_CHECKPOINT_FAILED
    label = "Training stopped"


def one_line(e: BaseException) -> str:
    """The message of `e` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(e).split())
