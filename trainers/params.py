"""A run's initial parameters, placed on the mesh.

A random init of any subset of them, or `model_init`'s checkpoint read in its stored dtype (`dont_load`, vocabulary
extension, position-embedding resampling).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from paligemma import checkpoints, lora, siglip, tree
from paligemma import model as model_lib
from trainers.config import ConfigError
from trainers.errors import one_line
from trainers.setup import Setup

log = logging.getLogger("trainers.train")  # every trainer module logs under the program's name

EMBEDDING = "llm/embedder/input_embedding"


def put_host(host: np.ndarray, target: NamedSharding, dtype: Any = None) -> jax.Array:
    """Places the host array `host` on `target`'s devices as `dtype` (default: its own).

    Each device's shard is cast on its own while it is copied, so the host never holds a converted copy of the whole
    array.
    """
    dtype = np.dtype(host.dtype if dtype is None else dtype)
    return jax.make_array_from_callback(host.shape, target, lambda index: np.asarray(host[index], dtype))


@functools.lru_cache(maxsize=16)
def _init_program(
    model: model_lib.Model, out_shardings: tuple[tuple[str, NamedSharding], ...], compiler_options: Any
) -> Any:
    """The jitted `rng -> {name: param}` of the parameters named in `out_shardings`, placed by them.

    Cached per (model, names and shardings, compiler options), all hashable: a later run in this process (tests,
    notebooks) with the same program reuses the compiled one.
    """
    names = [name for name, _ in out_shardings]
    dummy = model_lib.dummy_inputs({"img": model.img, "llm": model.llm})

    def init(key):
        full = tree.flatten(model.init(key, *dummy)["params"])
        return {n: full[n] for n in names}

    return jax.jit(init, out_shardings=dict(out_shardings), compiler_options=compiler_options)


def random_params(
    model: model_lib.Model,
    names: Sequence[str],
    shardings: dict[str, Any],
    rng: jax.Array,
    compiler_options: Any = None,
) -> dict[str, Any]:
    """Random init of the parameters `names` only (XLA drops the rest of the init), placed by `shardings`.

    `compiler_options`: None or a hashable mapping of XLA options (a `FrozenDict`).
    """
    return _init_program(model, tuple((n, shardings[n]) for n in names), compiler_options)(rng)


def _image_size(model_config) -> int | None:
    size = model_config["img"].get("image_size")
    return size if isinstance(size, int) else None


def fit_posemb(loaded: dict[str, np.ndarray], flat_shapes: dict[str, Any], model_config) -> None:
    """Resamples the checkpoint's `img/pos_embedding` (a square grid) to the model's grid, in float32.

    Done when the grids differ (what `checkpoints.load(..., dtype="float32", image_size=...)` does; done here so that
    the other arrays stay in their stored dtype).
    """
    name = "img/pos_embedding"
    if name not in loaded or name not in flat_shapes or _image_size(model_config) is None:
        return
    have, want = tuple(loaded[name].shape), tuple(flat_shapes[name].shape)
    old = math.isqrt(have[1]) if len(have) == 3 else 0
    if have == want or len(want) != 3 or (have[0], have[2]) != (want[0], want[2]) or old * old != have[1]:
        return  # same grid, or reported as a mismatch
    new_grid = siglip.SiglipConfig(**{**dict(model_config["img"]), "num_classes": None}).grid
    log.info("model_init: resampling img/pos_embedding from a %s to a %s grid.", (old, old), new_grid)
    loaded[name] = np.asarray(siglip.resample_posemb(np.asarray(loaded[name], np.float32), (old, old), new_grid))


def loaded_params(setup: Setup, shardings: dict[str, Any], rng: jax.Array, path: str | None = None) -> dict[str, Any]:
    """Params from `model_init` (checkpoint arrays; dont_load / missing-vocab rows from the random init).

    The checkpoint is read in its stored dtype (a bfloat16 3B file: 6 GB of host memory, not 12) and each array is
    cast to the model's parameter dtype shard by shard as it is placed (`put_host`). `path`: read this checkpoint
    instead of `model_init` (a LoRA run's base). A LoRA run's adapters are not read (`State` makes them).
    """
    cfg = setup.cfg
    flat_shapes = {n: s for n, s in tree.flatten(setup.shapes).items() if not lora.is_adapter(n)}
    path = path or setup.init_path
    try:
        _, loaded = checkpoints.load(path)
    except (ValueError, OSError) as e:
        raise ConfigError(f"config.model_init: {one_line(e)}") from None
    loaded = tree.flatten(loaded)
    fit_posemb(loaded, flat_shapes, setup.model_config)
    dont_load = list(cfg.model_load.dont_load or ())
    random_names, extend, problems = [], {}, []
    for name, shape in flat_shapes.items():
        if any(re.search(r, name) for r in dont_load):
            random_names.append(name)
        elif name not in loaded:
            problems.append(f"{name} missing from the checkpoint")
        elif loaded[name].shape != shape.shape:
            have = loaded[name].shape
            if name == EMBEDDING and have[1:] == shape.shape[1:] and have[0] < shape.shape[0]:
                extend[name] = have[0]
                random_names.append(name)
            else:
                problems.append(f"{name} is {have} in the checkpoint but {shape.shape} in the model")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(
            f"config.model_init {path} does not fit the model: {'; '.join(problems[:3])}"
            f"{more}; fix config.model, or list them in config.model_load.dont_load."
        )
    unused = sorted(set(loaded) - set(flat_shapes))
    if unused:
        log.warning("model_init: %d checkpoint arrays are not used by the model: %s", len(unused), unused[:5])
    random = random_params(setup.model, random_names, shardings, rng, setup.compiler_options) if random_names else {}
    out = {}
    for name, shape in flat_shapes.items():
        if name in extend:
            rows = extend[name]
            host = np.zeros(shape.shape, loaded[name].dtype)
            host[:rows] = loaded[name]
            keep = jax.jit(
                lambda ckpt, init, n=rows: jnp.where(jnp.arange(ckpt.shape[0])[:, None] < n, ckpt, init),
                out_shardings=shardings[name],
                compiler_options=setup.compiler_options,
            )
            out[name] = keep(put_host(host, shardings[name], shape.dtype), random[name])
            log.info(
                "model_init: vocabulary extended from %d to %d rows (new rows randomly initialised).",
                rows,
                shape.shape[0],
            )
        elif name in random:
            out[name] = random[name]
        else:
            out[name] = put_host(loaded[name], shardings[name], shape.dtype)
        loaded.pop(name, None)
    log.info(
        "model_init %s: %d arrays loaded, %d randomly initialised (%s).",
        path,
        len(flat_shapes) - len(random_names) + len(extend),
        len(random_names) - len(extend),
        ", ".join(n for n in random_names if n not in extend) or "none",
    )
    return tree.unflatten(out)
