"""The evaluator type registry: `type=` names of `config.evals` entries -> `Evaluator` subclasses.

    @register_evaluator("vqa")
    class VqaEvaluator(GenerativeEvaluator): ...

`evaluators.tasks` registers the built-in types; `evaluators.common.build_evaluators` looks them up here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paligemma.errors import UserError

__all__ = ["EVALUATOR_TYPES", "EvalConfigError", "register_evaluator"]

EVALUATOR_TYPES: dict[str, Any] = {}  # type name -> Evaluator subclass


class EvalConfigError(UserError, ValueError):
    """A bad `config.evals` entry (unknown type or key, missing or invalid value)."""


def register_evaluator(name: str) -> Callable[[type], type]:
    """Class decorator: makes an `Evaluator` subclass available as `type=name` in eval configs."""

    def wrap(cls):
        cls.TYPE = name
        EVALUATOR_TYPES[name] = cls
        return cls

    return wrap
