"""One path layer for every file a user names: local paths and Cloud Storage (gs://bucket/...) URLs.

Local paths go to `os` / `open` exactly as before; URLs (anything with `://`) go to fsspec, which reaches gs:// with
gcsfs (the JSON API over HTTP). No TensorFlow: this module, `paligemma/` and the train step run where TF is absent.

On import this module settles how the other GCS clients of a run behave, so that all of them reach the same storage:

* `EPATH_USE_TF=false` (unless set): orbax's `etils.epath` then uses fsspec/gcsfs for gs:// as we do, instead of
  `tf.io.gfile` (whose GCS endpoint is compiled in and cannot be pointed at an emulator).
* `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false` (unless set): gcsfs then does not probe each bucket over gRPC first
  (against a plain-HTTP emulator that probe hangs until it times out).
* gcsfs keeps no listing cache (fsspec config `gs.use_listings_cache=False`): folders that other processes write
  (checkpoints, metrics) are listed as they are now.
* With `STORAGE_EMULATOR_HOST=http://host:port` (a Cloud Storage emulator), gcsfs talks to it anonymously, and
  tensorstore (orbax's array store) is pointed at it too (`TENSORSTORE_GCS_HTTP_URL`, and a fixed test token
  `GOOGLE_AUTH_TOKEN_FOR_TESTING`, so that no credential lookup leaves the machine).

Cloud Storage has no partial writes: an object appears whole when its upload completes, so `atomic_write` to gs://
writes a local temporary file and uploads it once; `append_text` rewrites the object.
"""

from __future__ import annotations

import builtins
import contextlib
import glob as glob_lib
import os
import posixpath
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import fsspec
import fsspec.config

from paligemma.errors import UserError

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class StorageError(UserError, OSError):
    """A remote file operation failed; the message names the URL and what to check."""


def configure() -> None:
    """Sets the environment defaults described in the module docstring.

    Called on import; call it again after setting `STORAGE_EMULATOR_HOST` in a running process, before the first
    gs:// access.
    """
    os.environ.setdefault("EPATH_USE_TF", "false")
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    emulator = os.environ.get(EMULATOR_ENV, "")
    if emulator and emulator != "default":
        url = emulator if emulator.startswith(("http://", "https://")) else f"http://{emulator}"
        os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", url)
        os.environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")
    # Every gcsfs instance of the process (ours, orbax's) lists afresh: other processes write the same folders.
    fsspec.config.conf.setdefault("gs", {}).setdefault("use_listings_cache", False)
    gpath = sys.modules.get("etils.epath.gpath")  # epath caches its backend choice on first use: choose again
    if gpath is not None and hasattr(getattr(gpath, "_is_tf_installed", None), "cache_clear"):
        gpath._is_tf_installed.cache_clear()


configure()


def is_remote(path: str | os.PathLike) -> bool:
    """True for URLs such as gs://bucket/file (handled by fsspec), False for local paths."""
    return "://" in os.fspath(path)


_FILESYSTEMS: dict[tuple[str, str], Any] = {}


def _fs(path: str):
    """The fsspec filesystem of URL `path`.

    One per protocol and emulator address; no listing cache, so that files written by other processes are seen at
    once.
    """
    protocol = path.split("://", 1)[0]
    emulator = os.environ.get(EMULATOR_ENV, "")
    key = (protocol, emulator)
    if key not in _FILESYSTEMS:
        kwargs: dict[str, Any] = {}
        if protocol in ("gs", "gcs"):
            kwargs["use_listings_cache"] = False
            if emulator and "FSSPEC_GCS_TOKEN" not in os.environ:
                kwargs["token"] = "anon"
        try:
            _FILESYSTEMS[key] = fsspec.filesystem(protocol, **kwargs)
        except (ImportError, ValueError) as e:
            raise StorageError(
                f"{path}: no file system for {protocol}:// ({e}); gs:// needs the gcsfs package "
                f"(pip install -r requirements.txt)."
            ) from None
    return _FILESYSTEMS[key]


def _missing(path: str) -> FileNotFoundError:
    hint = ""
    if is_remote(path):
        where = os.environ.get(EMULATOR_ENV)
        hint = (
            f" (no such object or prefix in the emulator at {where}; upload it or fix the path)"
            if where
            else " (no such object or prefix; check the bucket name and path, e.g. `gcloud storage ls` it)"
        )
    return FileNotFoundError(f"{path}: not found{hint}.")


def exists(path: str | os.PathLike) -> bool:
    """os.path.exists for local paths; for URLs, an object or a prefix with objects under it exists."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.exists(path)
    return _fs(path).exists(path)


def isfile(path: str | os.PathLike) -> bool:
    """os.path.isfile; for URLs, an object exists at exactly `path`."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.isfile(path)
    return _fs(path).isfile(path)


def isdir(path: str | os.PathLike) -> bool:
    """os.path.isdir; for URLs, a bucket or a prefix with objects under it ("folders" exist once they hold a file)."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.isdir(path)
    return _fs(path).isdir(path)


def listdir(path: str | os.PathLike) -> list[str]:
    """Names (not paths) of the entries in folder `path`, sorted. Raises FileNotFoundError when it does not exist."""
    path = os.fspath(path)
    if not is_remote(path):
        return sorted(os.listdir(path))
    fs = _fs(path)
    if not fs.isdir(path):
        raise _missing(path)
    base = path.rstrip("/").split("://", 1)[1]
    return sorted(posixpath.relpath(p.rstrip("/"), base) for p in fs.ls(path, detail=False) if p.rstrip("/") != base)


def glob(pattern: str | os.PathLike) -> list[str]:
    """Paths matching `pattern` (`*`, `?`, `[..]`, `**`), sorted; URLs keep their scheme."""
    pattern = os.fspath(pattern)
    if not is_remote(pattern):
        return sorted(glob_lib.glob(pattern, recursive=True))
    protocol = pattern.split("://", 1)[0]
    return sorted(f"{protocol}://{p}" for p in _fs(pattern).glob(pattern))


def find(path: str | os.PathLike) -> list[str]:
    """Every file under folder `path` (recursively), as full paths, sorted; [] when there is none."""
    path = os.fspath(path)
    if not is_remote(path):
        return sorted(os.path.join(root, f) for root, _, files in os.walk(path) for f in files)
    protocol = path.split("://", 1)[0]
    return sorted(f"{protocol}://{p}" for p in _fs(path).find(path.rstrip("/") + "/"))


def makedirs(path: str | os.PathLike) -> None:
    """os.makedirs(exist_ok=True); a no-op for URLs (object stores have no folders; they appear with their files)."""
    path = os.fspath(path)
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def join(path: str | os.PathLike, *parts: str) -> str:
    """os.path.join for local paths, "/"-joining for URLs."""
    path = os.fspath(path)
    return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def dirname(path: str | os.PathLike) -> str:
    """os.path.dirname, keeping a URL's scheme and bucket."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.dirname(path)
    scheme, rest = path.split("://", 1)
    return f"{scheme}://{posixpath.dirname(rest.rstrip('/')) or rest}"


def abspath(path: str | os.PathLike) -> str:
    """os.path.abspath(os.path.expanduser(path)) for local paths; URLs unchanged."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(os.path.expanduser(path))


def open(path: str | os.PathLike, mode: str = "r") -> IO[Any]:
    """`open` (text modes in UTF-8) for local paths and URLs; modes r, rb, w, wb ("a" only locally: see append_text).

    A missing file raises FileNotFoundError naming the path (and, for URLs, what to check).
    """
    path = os.fspath(path)
    if not is_remote(path):
        return builtins.open(path, mode, encoding=None if "b" in mode else "utf-8")
    if "a" in mode or "+" in mode:
        raise ValueError(f"{path}: mode {mode!r} is not supported for Cloud Storage objects; use append_text.")
    try:
        return _fs(path).open(path, mode, encoding=None if "b" in mode else "utf-8")
    except FileNotFoundError:
        raise _missing(path) from None


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file."""
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str | os.PathLike) -> str:
    """The whole file as UTF-8 text."""
    with open(path, "r") as f:
        return f.read()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes UTF-8 `text` to `path` atomically (see `atomic_write`)."""
    write_bytes(path, text.encode("utf-8"))


def append_text(path: str | os.PathLike, text: str) -> None:
    """Appends `text` to a file (created if missing).

    Cloud Storage objects cannot grow, so for URLs the object is read and rewritten whole (fine for logs of a few MB).
    """
    path = os.fspath(path)
    if not is_remote(path):
        with builtins.open(path, "a", encoding="utf-8") as f:
            f.write(text)
        return
    old = read_bytes(path) if isfile(path) else b""
    write_bytes(path, old + text.encode("utf-8"))


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Calls `write(file)` on a temporary binary file, then puts it at `path` in one step.

    Readers see the old file or the whole new one, never a partial one.

    Local: a temporary file next to `path` (fsync'ed), renamed over it; the folder is created. URLs: a local temporary
    file, uploaded once when complete (an object appears atomically when its upload finishes). The temporary file is
    removed on failure.
    """
    path = os.fspath(path)
    remote = is_remote(path)
    folder = tempfile.gettempdir() if remote else os.path.dirname(os.path.abspath(path))
    if not remote:
        os.makedirs(folder, exist_ok=True)
    name = path.rstrip("/").rsplit("/", 1)[-1] if remote else os.path.basename(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with builtins.open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if remote:
            upload(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def upload(local: str, path: str | os.PathLike) -> None:
    """Copies the local file `local` to `path` (a URL: one upload; local: a copy)."""
    path = os.fspath(path)
    if not is_remote(path):
        shutil.copyfile(local, path)
        return
    try:
        _fs(path).put_file(local, path)
    except FileNotFoundError:
        raise StorageError(f"{path}: cannot write (does the bucket exist?).") from None


def copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copies a file between any two local paths or URLs (written atomically at `dst`)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if not is_remote(src):
        if is_remote(dst):
            upload(src, dst)
        else:
            with builtins.open(src, "rb") as fin:
                atomic_write(dst, lambda f: shutil.copyfileobj(fin, f, 1 << 22))
        return
    with open(src, "rb") as fin:
        atomic_write(dst, lambda f: shutil.copyfileobj(fin, f, 1 << 22))


def getsize(path: str | os.PathLike) -> int:
    """Size of the file in bytes."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.getsize(path)
    try:
        return int(_fs(path).size(path))
    except FileNotFoundError:
        raise _missing(path) from None


def remove(path: str | os.PathLike) -> None:
    """Deletes one file."""
    path = os.fspath(path)
    if not is_remote(path):
        os.remove(path)
        return
    try:
        _fs(path).rm_file(path)
    except FileNotFoundError:
        raise _missing(path) from None


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """A local path with the contents of `path`, for libraries that only open local files.

    Itself when local, else a temporary download (removed on exit).
    """
    path = os.fspath(path)
    if not is_remote(path):
        yield path
        return
    name = path.rstrip("/").rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        try:
            _fs(path).get_file(path, local)
        except FileNotFoundError:
            raise _missing(path) from None
        yield local
