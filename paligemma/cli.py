r"""What every command-line tool shares: `--config FILE` with `--config.KEY=VALUE` overrides, and one error boundary.

Config files and overrides (`python -m trainers.train`, `evaluators.run`, `datasets.inspect`):

    --config path/to/config.py[:ARG]        calls the file's get_config(ARG) (get_config() without ARG)
    --config.KEY=VALUE  or  --config.KEY VALUE
    --config.input.batch_size=8             nested keys are dotted paths
    --config.mesh="[('data', -1), ('fsdp', 4)]"                    lists, tuples, dicts: Python literals
    --config.input.data="dict(name='jsonl', path='x.jsonl')"       dict(key=literal, ...) is accepted too
    --config.export_npz=True  --config.model_init=None  --config.lr=3e-5
    --config.optax_name=adamw  --config.model_init=/ckpt/pt_224.npz   anything else is the string as typed

VALUE is read as a Python literal (`ast.literal_eval`, plus `dict(k=v, ...)` calls; `true`/`false` as booleans); text
that is no literal is the string itself (quote a string that reads as a literal: `--config.x="'1e-3'"`). A value
that starts with `[`, `(`, `{` or `dict(` must be a valid literal. Nothing is ever evaluated as code. An int given
for a float field becomes a float. Overrides apply in command-line order, after the file's get_config and after the
program's schema has filled in the keys the file leaves unset, so every key a program knows can be overridden (the
trainer's keys: `trainers.config`). A key the program does not know is a one-line error naming the nearest key. Keys
may be added inside free-form dicts (e.g. `--config.evals.val.max_decode_len=20`, `--config.optax.b2=0.98`); a list
is replaced whole (`--config.mesh.0=...` is an error).

Error boundary: `run_main(main, argv)` runs a CLI's main; an expected failure (`paligemma.errors.UserError`, an
OSError about a path or a disk: missing, permission denied, read-only, full, a file where a folder should be) is
printed as ONE line `error: MESSAGE` (plus the log file, when the program has one) with a non-zero exit status
(`UserError.exit_code`, 2 by default; 130 after Ctrl-C); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import ast
import copy
import difflib
import glob
import importlib.util
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import jax
from absl import app, flags

from paligemma.errors import UserError, describe_os_error, is_expected_os_error, one_line
from paligemma.tree import plain

EXIT_INTERRUPTED = 130


class ConfigOverrideError(UserError, ValueError):
    """A bad `--config` file or `--config.KEY=VALUE` override (unknown key, bad value, missing value)."""

    label = "Config error"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()  # a schema value: the key has no default (schema filling leaves it unset)


# ----------------------------------------------------------------------------------------------------------
# The error boundary.


def report(e: BaseException, log_path: str | None = None) -> None:
    """Prints the one-line report of an expected error (a list of problems gets a line each) to stderr."""
    label = getattr(e, "label", "error")
    message = describe_os_error(e) if isinstance(e, OSError) else str(e)
    problems = [p for p in message.split("\n- ") if p.strip()] if message.startswith("- ") else [message]
    suffix = f" (log: {log_path})" if log_path else ""
    if len(problems) > 1:
        text = f"{label}:" + "".join(f"\n  - {one_line(p.removeprefix('- '))}" for p in problems) + suffix
    else:
        text = f"{label}: {one_line(problems[0].removeprefix('- '))}{suffix}"
    details = getattr(e, "details", None)
    print(text + (f"\n{details.rstrip()}" if details else ""), file=sys.stderr, flush=True)


def run_main(
    main: Callable[..., int | None],
    *args: Any,
    log_path: str | Callable[[], str | None] | None = None,
    **kwargs: Any,
) -> int:
    """`main(*args, **kwargs)`'s exit status; an expected error is printed as one line and gives its exit status.

    Args:
      main: the CLI's body; returns its exit status (None: 0).
      *args: passed to `main`.
      log_path: the program's log file (or a function returning it, once known), named in the error line.
      **kwargs: passed to `main`.

    Returns:
      The exit status: `main`'s, `UserError.exit_code` (2 unless a subclass says otherwise) for a UserError or an
      environment OSError (`paligemma.errors.is_expected_os_error`), 130 after Ctrl-C. Other exceptions propagate.
    """
    skip_absent_tpu()
    try:
        code = main(*args, **kwargs)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C).", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as e:
        if not isinstance(e, UserError) and not is_expected_os_error(e):
            raise
        report(e, log_path() if callable(log_path) else log_path)
        return getattr(e, "exit_code", UserError.exit_code)
    return 0 if code is None else int(code)


# Accelerator plugins that mean "this host may have a GPU": JAX is then left to choose its backends.
_GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin")


def skip_absent_tpu() -> bool:
    """Keeps JAX from probing for a TPU on a host that cannot have one; True when it did.

    With libtpu installed (`requirements-dev.txt` has it, for `--dry_run`) JAX tries to start a TPU backend on every
    host, and on one without a TPU libtpu prints about ten lines of warnings first. When no platform is chosen
    (`JAX_PLATFORMS` unset), no TPU device exists (`/dev/accel*`, `/dev/vfio/N`, a TPU VM's environment) and no GPU
    plugin is installed, the CPU is the only backend there is: select it. `--dry_run` compiles through libtpu
    directly and is not affected.
    """
    if os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms:
        return False
    if importlib.util.find_spec("libtpu") is None or any(importlib.util.find_spec(p) for p in _GPU_PLUGINS):
        return False
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*") or os.environ.get("TPU_ACCELERATOR_TYPE"):
        return False
    jax.config.update("jax_platforms", "cpu")
    return True


# ----------------------------------------------------------------------------------------------------------
# Config files.


def load_config_file(spec: str) -> Any:
    """Loads `path.py[:arg]` by calling the file's `get_config(arg)` (or `get_config()` without an argument)."""
    path, _, arg = str(spec).partition(":")
    if not os.path.isfile(path):
        raise ConfigOverrideError(f"config file {path!r} not found.")
    module_spec = importlib.util.spec_from_file_location(f"_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigOverrideError(f"config file {path!r} has no get_config(arg=None) function.")
    return module.get_config(arg) if arg else module.get_config()


# ----------------------------------------------------------------------------------------------------------
# Override values.

_STRUCTURED = ("[", "(", "{", "dict(")


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args):
            raise ValueError("only dict(key=value, ...) calls are allowed")
        if any(kw.arg is None for kw in node.keywords):
            raise ValueError("dict(**...) is not allowed")
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("{**...} is not allowed")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def parse_value(text: str, current: Any = None) -> Any:
    """The value of `--config.KEY=text`: a Python literal, or the string itself (see the module docstring).

    Args:
      text: the value as typed.
      current: the key's value before the override (an int given for a float field becomes a float).

    Raises:
      ValueError: text that starts like a list/tuple/dict but is no valid literal.
    """
    stripped = text.strip()
    if stripped in ("true", "false"):
        return stripped == "true"
    try:
        value = _literal(ast.parse(stripped, mode="eval").body)
    except (SyntaxError, ValueError, TypeError) as e:
        if stripped.startswith(_STRUCTURED):
            detail = e.msg if isinstance(e, SyntaxError) else str(e)
            raise ValueError(f"{text!r} is not a Python literal ({detail})") from None
        return text
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def split_overrides(argv: Sequence[str], name: str = "config") -> tuple[list[str], list[tuple[str, str]]]:
    """(argv without the `--NAME.KEY=VALUE` / `--NAME.KEY VALUE` overrides, [(KEY, VALUE), ...] in order).

    Arguments after `--` are left alone. Raises ConfigOverrideError for `--NAME.KEY` without a value.
    """
    prefixes = (f"--{name}.", f"-{name}.")
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg.startswith(prefixes):
            key, eq, value = arg.split(".", 1)[1].partition("=")
            if not eq:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    raise ConfigOverrideError(f"{arg} needs a value: {arg}=VALUE.")
                value = argv[i + 1]
                i += 1
            if not key or any(not part for part in key.split(".")):
                raise ConfigOverrideError(f"bad override {arg!r}: use --{name}.KEY=VALUE (KEY a dotted path).")
            overrides.append((key, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


# ----------------------------------------------------------------------------------------------------------
# Applying overrides.


def nearest_hint(key: str, valid: Collection[str], prefix: str = "") -> str:
    """The hint for an unknown `key`: "did you mean PREFIX+NEAREST?", else the list of `valid` keys."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    if close:
        return f"did you mean {prefix + close[0]!r}?"
    return f"valid keys: {', '.join(sorted(valid))}." if valid else "it has no keys."


def fill_defaults(config: dict[str, Any], schema: Mapping[str, Any], open_keys: Collection[str] = (), prefix=""):
    """Adds (in place) every key of `schema` that `config` lacks, with its default (REQUIRED keys stay unset).

    Nested dicts of the schema are sub-schemas, filled recursively unless their dotted path is in `open_keys`
    (free-form dicts: their default is copied when the key is missing). A key set to a non-dict is left alone.
    """
    for key, default in schema.items():
        where = prefix + key
        if default is REQUIRED:
            continue
        if isinstance(default, Mapping) and where not in open_keys:
            if config.get(key) is None:
                config[key] = {}
            if isinstance(config[key], dict):
                fill_defaults(config[key], default, open_keys, where + ".")
        elif key not in config:
            config[key] = copy.deepcopy(default)
    return config


def apply_overrides(
    config: Any,
    overrides: Sequence[tuple[str, str]],
    *,
    schema: Mapping[str, Any] | None = None,
    open_keys: Collection[str] = (),
    fill: bool = False,
    name: str = "config",
) -> dict[str, Any]:
    """`config` as a plain dict with `overrides` ([(dotted key, value text)]) applied; raises ConfigOverrideError.

    Args:
      config: a ConfigDict or mapping (not modified).
      overrides: from `split_overrides`.
      schema: the keys the program knows (nested dicts = sub-schemas, other values = defaults, REQUIRED = no
        default). A key may be set when it is in the config or in the schema, or anywhere inside a free-form dict.
      open_keys: dotted paths of the schema's free-form dicts (their keys are checked elsewhere).
      fill: first fill the schema's defaults into the config (`fill_defaults`).
      name: the flag's name, for messages.
    """
    out = plain(config) if config is not None else {}
    if not isinstance(out, dict):
        raise ConfigOverrideError(f"--{name}: get_config() must return a ConfigDict or dict, got {type(config)}.")
    schema = schema or {}
    if fill:
        fill_defaults(out, schema, open_keys)
    for key, text in overrides:
        _apply_one(out, key, text, schema, open_keys, name)
    return out


def _apply_one(config: dict, key: str, text: str, schema: Mapping[str, Any], open_keys, name: str) -> None:
    parts = key.split(".")
    flag = f"--{name}.{key}"
    node, sub = config, schema  # the dict being walked, and its schema (None: not in the schema)
    created = free = False  # below a dict this override created / inside a free-form dict
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        known = part in node or (isinstance(sub, Mapping) and part in sub)
        # New keys: anywhere the schema knows, below a new dict, and as leaves of free-form dicts.
        if not (known or created or (free and last)):
            valid = set(node) | (set(sub) if isinstance(sub, Mapping) else set())
            parent = f"config.{'.'.join(parts[:depth])}" if depth else "the config"
            hint = nearest_hint(part, valid, where[: -len(part)])
            raise ConfigOverrideError(f"{flag}: unknown key {where!r} ({parent} has no {part!r}); {hint}")
        if last:
            try:
                node[part] = parse_value(text, node.get(part))
            except ValueError as e:
                raise ConfigOverrideError(
                    f"{flag}: {e}; lists, tuples and dicts are Python literals, e.g. "
                    f"--{name}.mesh=\"[('data', -1)]\" or --{name}.input.data=\"dict(name='jsonl', path='x.jsonl')\"."
                ) from None
            return
        free = free or where in open_keys
        sub = sub.get(part) if isinstance(sub, Mapping) else None
        if node.get(part) is None:  # missing or None: becomes a dict
            node[part] = {}
            created = True
        if not isinstance(node[part], dict):
            raise ConfigOverrideError(
                f"{flag}: config.{where} is a {type(node[part]).__name__}, not a dict; set it whole: "
                f"--{name}.{where}=VALUE."
            )
        node = node[part]


# ----------------------------------------------------------------------------------------------------------
# The absl flag.

_FLAGS: dict[str, ConfigFlag] = {}


class ConfigFlag:
    """`--NAME path.py[:arg]` and its `--NAME.KEY=VALUE` overrides (made by `define_config_flag`)."""

    def __init__(self, name: str, spec: str | None = None, overrides: Sequence[tuple[str, str]] = (), *, absl=True):
        """`--NAME` read from absl's FLAGS (absl=True), or the given spec (absl=False, for programs and tests)."""
        self.name = name
        self._spec, self._absl = spec, absl
        self.overrides: list[tuple[str, str]] = list(overrides)

    @property
    def spec(self) -> str | None:
        """The `path.py[:arg]` given (None when the flag was not given)."""
        return flags.FLAGS[self.name].value if self._absl else self._spec

    @property
    def filename(self) -> str | None:
        """The config file's path (without `:arg`)."""
        return None if self.spec is None else self.spec.partition(":")[0]

    def load(self, base: Any = None, **kwargs: Any) -> dict[str, Any] | None:
        """The config of the flag (or `base` when the flag is not given) with the overrides applied.

        Returns None when there is neither a file nor a base (overrides then are an error). Keyword arguments go to
        `apply_overrides` (schema, open_keys, fill).
        """
        config = load_config_file(self.spec) if self.spec else base
        if config is None:
            if self.overrides:
                raise ConfigOverrideError(f"--{self.name}.{self.overrides[0][0]} given without --{self.name} FILE.")
            return None
        return apply_overrides(config, self.overrides, name=self.name, **kwargs)


def define_config_flag(name: str = "config", help_text: str = "Config file path.py[:arg].") -> ConfigFlag:
    """Defines the absl string flag `--NAME`; `parse_flags` (app.run's flags_parser) collects its overrides."""
    flags.DEFINE_string(name, None, f"{help_text} Override keys with --{name}.KEY=VALUE (see paligemma.cli).")
    _FLAGS[name] = ConfigFlag(name)
    return _FLAGS[name]


def config_flag(name: str = "config") -> ConfigFlag:
    """The ConfigFlag that `define_config_flag(name)` made: its file spec and the overrides `parse_flags` found."""
    return _FLAGS[name]


def parse_flags(argv: Sequence[str]) -> list[str]:
    """The flags parser of `app.run(main, flags_parser=parse_flags)`: takes out the overrides, then parses the rest.

    A bad override is reported on one line (exit status 2), like absl's own flag errors.
    """
    rest = list(argv)
    try:
        for flag in _FLAGS.values():
            rest, flag.overrides = split_overrides(rest, flag.name)
    except ConfigOverrideError as e:
        report(e)
        sys.exit(e.exit_code)
    return app.parse_flags_with_usage(rest)
