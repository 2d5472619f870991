"""Small generic helpers for nested parameter and config trees, shared by every layer of the project.

- `flatten` / `unflatten`: nested dicts <-> `{"a/b/c": leaf}` (the checkpoint name of a parameter is its
  "/"-joined path).
- `plain`: an ml_collections `ConfigDict` (or any mapping/sequence tree) -> plain dicts, lists and tuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> `{"a/b/c": leaf}`."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"a/b/c": leaf}` -> nested dict."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def plain(value: Any) -> Any:
    """A config tree as plain Python: ConfigDicts and mappings -> dicts, numpy scalars -> numbers.

    Lists and tuples keep their type (`json.dumps` writes both as arrays). `ml_collections.FieldReference`s are
    resolved (ConfigDict.to_dict does that); other leaves are kept as they are.
    """
    if hasattr(value, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value
