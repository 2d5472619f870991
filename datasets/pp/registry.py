"""Op registry and `get_preprocess_fn`, which turns a pp string into a `dict -> dict` function.

An op is registered as a *factory*: `@register("name") def name(arg, ..., key="image") -> fn` where the factory
takes the literal arguments written in the pp string and returns `fn(data: dict[str, tf.Tensor]) -> dict`.
The returned functions are pure TF graph code (or wrap Python through `tf.numpy_function` /
`tf.py_function`), so the composed function can be used in `tf.data.Dataset.map`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from datasets.pp.grammar import OpSpec, parse_specs
from paligemma.errors import UserError

__all__ = ["Registry", "registry", "register", "get_preprocess_fn", "build_op", "PPOpError"]

log = logging.getLogger(__name__)

Data = dict  # dict[str, tf.Tensor]
OpFn = Callable[[Data], Data]


class PPOpError(UserError, ValueError):
    """An op that does not exist or whose arguments do not fit its factory (a ValueError)."""


class Registry(Mapping):
    """Name -> op factory. Read like a dict; add ops with `register`.

    `builtin_modules` are imported (and so register their ops) the first time the registry is read, not when it
    is created: the op modules need TensorFlow, while the package's numpy-only parts (`datasets.pp.layout`) must
    import without it.
    """

    def __init__(self, builtin_modules: tuple[str, ...] = ()):
        self._ops: dict[str, Callable[..., OpFn]] = {}
        self._pending = list(builtin_modules)

    def _load_builtins(self):
        while self._pending:
            importlib.import_module(self._pending.pop(0))

    def register(self, name: str, *, override: bool = False) -> Callable:
        """Decorator registering an op factory under `name` (ValueError on a duplicate unless `override`)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"pp op name must be a Python identifier, got {name!r}")

        def deco(factory):
            if name in self._ops and not override and self._ops[name] is not factory:
                raise ValueError(
                    f"pp op {name!r} is already registered (by {self._ops[name].__module__}); "
                    f"pass override=True to replace it"
                )
            self._ops[name] = factory
            return factory

        return deco

    def suggestions(self, name: str, n: int = 3) -> list[str]:
        """Up to `n` registered op names close to `name` (for error messages)."""
        self._load_builtins()
        return difflib.get_close_matches(name, list(self._ops), n=n, cutoff=0.5)

    def __getitem__(self, name: str):
        self._load_builtins()
        try:
            return self._ops[name]
        except KeyError:
            hint = self.suggestions(name)
            raise KeyError(
                f"unknown pp op {name!r}" + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
            ) from None

    def __iter__(self) -> Iterator[str]:
        self._load_builtins()
        return iter(self._ops)

    def __len__(self) -> int:
        self._load_builtins()
        return len(self._ops)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._ops


registry = Registry(
    builtin_modules=(
        "datasets.pp.ops_image",
        "datasets.pp.ops_text",
        "datasets.pp.ops_targets",
        "datasets.pp.ops_seg",
        "datasets.pp.ops_video",
    )
)


def register(name: str, *, override: bool = False) -> Callable:
    """`@pp.register("name")`: registers an op factory in the global `registry`."""
    return registry.register(name, override=override)


def _signature(name: str, factory) -> str:
    try:
        return f"{name}{inspect.signature(factory)}"
    except (TypeError, ValueError):
        return f"{name}(...)"


def build_op(spec: OpSpec, *, tokenizer: str | None = None, reg: Registry | None = None) -> OpFn:
    """Instantiates one parsed op: looks the factory up and calls it with the literal args.

    `tokenizer` is passed as the `tokenizer=` keyword to factories that take one, unless the pp string gave it.
    """
    reg = registry if reg is None else reg
    if spec.name not in reg:
        hint = reg.suggestions(spec.name)
        raise PPOpError(
            f"pp {spec.where()}: unknown op {spec.name!r}"
            + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else f"; known ops: {', '.join(sorted(reg))}")
        )
    factory = reg[spec.name]
    kwargs = dict(spec.kwargs)
    sig = inspect.signature(factory)
    if tokenizer is not None and "tokenizer" in sig.parameters and kwargs.get("tokenizer") is None:
        kwargs["tokenizer"] = tokenizer
    try:
        sig.bind(*spec.args, **kwargs)
    except TypeError as e:
        raise PPOpError(
            f"pp {spec.where()}: bad arguments {spec.text!r}: {e}; signature: {_signature(spec.name, factory)}"
        ) from None
    try:
        fn = factory(*spec.args, **kwargs)
    except (ValueError, TypeError, KeyError) as e:
        raise PPOpError(f"pp {spec.where()}: {spec.text!r}: {e}; signature: {_signature(spec.name, factory)}") from e
    except OSError as e:  # e.g. a tokenizer / checkpoint file that does not exist
        raise type(e)(f"pp {spec.where()}: {spec.text!r}: {e}") from e
    if not callable(fn):
        raise PPOpError(f"pp {spec.where()}: factory returned {type(fn).__name__}, not a function")
    return fn


def _describe(data: Mapping[str, Any]) -> str:
    parts = []
    for k in sorted(data):
        v = data[k]
        dtype = getattr(v, "dtype", type(v).__name__)
        shape = getattr(v, "shape", "")
        parts.append(f"{k}: {getattr(dtype, 'name', dtype)}{list(shape) if shape != '' else ''}")
    return "{" + ", ".join(parts) + "}"


def get_preprocess_fn(pp_string: str, *, tokenizer: str | None = None, log_summary: bool = False) -> OpFn:
    """Builds the preprocessing function of a pp string.

    Args:
      pp_string: `"op|op(args)|..."` (see `datasets.pp.grammar`). An empty string gives the identity.
      tokenizer: default SentencePiece model path for ops that take `tokenizer=` (`tok`, `tok_paligemma`,
        ...) when the pp string does not name one.
      log_summary: log the parsed ops, and, the first time the function is traced, the keys/dtypes/shapes after
        every op.

    Returns:
      `fn(data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]`, graph-mode safe (use it in `Dataset.map`).
      `fn` never mutates its input dict. `fn.ops` lists the parsed `OpSpec` s.

    Raises:
      ValueError: syntax errors, non-literal arguments, unknown ops (with the closest names) and arguments that do
        not fit an op's signature; each message names the op, its index and character offset.
    """
    specs = parse_specs(pp_string)
    fns = [(spec, build_op(spec, tokenizer=tokenizer)) for spec in specs]
    if log_summary:
        log.info("pp: %d ops from %r", len(specs), pp_string)
        for spec in specs:
            log.info("pp:   #%d %s", spec.index, spec.text)
    state = {"logged": not log_summary}

    def preprocess(data: Mapping[str, Any]) -> dict:
        if not isinstance(data, Mapping):
            raise TypeError(f"pp function expects a dict of tensors, got {type(data).__name__}")
        out = dict(data)
        if not state["logged"]:
            log.info("pp: input %s", _describe(out))
        for spec, fn in fns:
            try:
                out = fn(dict(out))
            except (KeyError, ValueError, TypeError) as e:
                msg = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
                if msg.startswith("pp op #"):
                    raise
                raise type(e)(f"pp {spec.where()}: {msg}") from e
            if not isinstance(out, Mapping):
                raise TypeError(f"pp {spec.where()} returned {type(out).__name__}, not a dict")
            if not state["logged"]:
                log.info("pp: after #%d %s -> %s", spec.index, spec.name, _describe(out))
        state["logged"] = True
        return dict(out)

    preprocess.ops = specs
    preprocess.pp_string = pp_string
    return preprocess
