"""Expected failures: the one base class of errors a user can fix, and how an OSError reads as one line.

Every error a command-line tool reports without a traceback derives from `UserError` (ConfigError, CheckpointError,
DataError, EvalConfigError, TokenizerSpecError, PredictError, RunError, ...): its message names the problem and the
fix. `paligemma.cli.run_main` prints such an error as `error: MESSAGE` and exits with `exit_code`; anything else (a
bug) keeps its traceback. Subclasses usually also derive from ValueError or OSError, so existing `except` clauses
keep working.
"""

from __future__ import annotations

import errno

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A failure the user can fix (bad config, missing or damaged file, ...); the message says what and how.

    Attributes:
      exit_code: the process exit status when a CLI stops on this error.
      label: the prefix of the one line a CLI prints (`label: message`).
      details: optional reference text printed as is below that line (e.g. which files to download, and where).
    """

    exit_code = EXIT_USER_ERROR
    label = "error"

    def __init__(self, *args: object, details: str | None = None):
        super().__init__(*args)
        self.details = details


# OSError numbers that describe the environment (a path, a disk, permissions), never a bug; with the fix to suggest.
OS_ERROR_HINTS = {
    errno.ENOENT: "check the path",
    errno.EACCES: "choose a path you may write to, or fix its permissions",
    errno.EPERM: "choose a path you may write to, or fix its permissions",
    errno.EROFS: "the file system is read-only: choose a writable path (e.g. another --workdir)",
    errno.ENOSPC: "the disk is full: free space or choose a path on another disk",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose a path on another disk",
    errno.EFBIG: "the file is too large for that file system: choose a path on another disk",
    errno.EISDIR: "a file was expected there, not a folder: choose another path",
    errno.ENOTDIR: "a folder was expected there, but it (or a parent) is a file: choose another path",
    errno.EEXIST: "a file is in the way (a folder was expected there): choose another path or remove the file",
    errno.ENAMETOOLONG: "choose a shorter path",
}


# These say what is wrong with a path even when raised with a message only (no errno).
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def one_line(e: BaseException) -> str:
    """The message of `e` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(e).split())


def is_expected_os_error(e: BaseException) -> bool:
    """True for an OSError about the environment (missing path, permissions, read-only or full disk, ...)."""
    return isinstance(e, (UserError, *_PATH_ERRORS)) or (isinstance(e, OSError) and e.errno in OS_ERROR_HINTS)


def describe_os_error(e: OSError) -> str:
    """One line for an environment OSError: what failed on which path, and what to do."""
    if isinstance(e, UserError) or e.errno not in OS_ERROR_HINTS:
        return one_line(e)
    where = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    what = e.strerror or one_line(e)
    return f"{what}: {where} ({OS_ERROR_HINTS[e.errno]})." if where else f"{what} ({OS_ERROR_HINTS[e.errno]})."
