r"""Plan a run without hardware: compile a run config's programs for a named TPU slice on this host and report them.

    python -m trainers.train --config configs/transfer/vqav2.py --workdir /tmp/plan --dry_run=v5e:2x4 \
        [--dry_run_json=/tmp/plan.json]

Builds what `trainers.train` builds from the config (model, mesh over the slice's chips, parameter shardings,
optimizer, the very train step of `trainers.state.State.train_step`, and the evaluators' programs: the decode
prefill + loop of the generative ones, the forward pass of `perplexity`) with abstract inputs (`jax.ShapeDtypeStruct`
with shardings): no data, checkpoint or tokenizer is opened. Batch shapes come from the config: `input.batch_size`
(split into `accum_steps` microbatches inside the step), the model's image resolution and the pp string's
`tok_paligemma(text_len=N)` (`tok_paligemma_prompt` for the eval programs). Everything is compiled by XLA for the
topology (`libtpu`'s compiler, which runs on a CPU host: `pip install libtpu==0.0.42.1`, the version `jax[tpu]`
0.10.2 pins), and a table per chip is printed:

  * memory: parameters, optimizer state, batch (exact, from the shardings), activations + temporaries (XLA's
    `memory_analysis`, or the figure of its RESOURCE_EXHAUSTED error), total against the chip's usable HBM;
  * FLOPs per step and chip: XLA's `cost_analysis` count, corrected for loops (XLA counts a while loop's body once;
    the layers are scanned with `nn.scan`, microbatches with `lax.scan`): the matmul FLOPs of the optimised HLO
    (dots and convolutions, counting only the valid taps of dilated/padded windows, as XLA does) are summed with
    every loop body counted once and with each body multiplied by its trip count (read from the loop condition), and
    the difference (the uncounted iterations' matmuls) is added to XLA's count; XLA's bytes accessed get the
    uncounted iterations' bytes the same way (operands + result of each unfused instruction of the loop bodies).
    Next to it, the model's analytic count (2 per
    multiply-add of every matmul, forward x 3 for training, + one more forward of the rematerialised layers);
  * estimated step time: the roofline max(FLOPs / peak bf16 FLOP/s, bytes accessed / HBM bandwidth) per chip,
    and the MFU it implies (analytic model FLOPs without recomputation / (step time x peak)). An upper bound: real
    steps are slower (collectives, and float32 matmuls run far below the bf16 peak).

A config whose train step (or an evaluator's program, counted with the optimizer state that stays resident during
evaluation) does not fit fails with exit code 2 and says what to change (remat_policy, bfloat16 compute, the mesh's
fsdp/tensor axes, batch_size / accum_steps).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import topologies

from datasets.pp import grammar as pp_grammar
from evaluators import common, tasks
from paligemma import decode, gemma, sharding, siglip
from paligemma import model as model_lib
from trainers import config as config_lib
from trainers.config import ConfigError
from trainers.errors import EXIT_CONFIG_ERROR, one_line
from trainers.setup import ModelSetup
from trainers.state import State

LIBTPU_PIN = "libtpu==0.0.42.1"  # the version jax[tpu]==0.10.2 pins; also in requirements-dev.txt
GIB = 2**30
# Total steps assumed when the config counts epochs (only the learning-rate schedule depends on it).
PLACEHOLDER_STEPS = 10_000


@dataclasses.dataclass(frozen=True)
class Chip:
    """A TPU chip: HBM (bytes; `usable` = what XLA lets a program use), peak bf16 FLOP/s, HBM bytes/s."""

    name: str
    hbm: float
    usable: float
    peak_flops: float
    hbm_bandwidth: float


# By `device.device_kind`. v5e's usable HBM is what XLA reports on a RESOURCE_EXHAUSTED error here; for the others
# it is assumed to be 0.25 GiB less than the HBM, like v5e (an error's figure replaces it when one is seen).
CHIPS: dict[str, Chip] = {
    "TPU v5 lite": Chip("v5e", 16 * GIB, 15.75 * GIB, 197e12, 819e9),
    "TPU v6 lite": Chip("v6e", 32 * GIB, 31.75 * GIB, 918e12, 1640e9),
    "TPU v5": Chip("v5p", 95 * GIB, 94.75 * GIB, 459e12, 2765e9),
    "TPU v4": Chip("v4", 32 * GIB, 31.75 * GIB, 275e12, 1228e9),
}

# Slice names (`v5e-8`, `v5litepod-16`) -> topology names libtpu accepts.
_V5E_SHAPES = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}


class DryRunError(RuntimeError):
    """The dry run cannot be done here (libtpu missing, unknown topology); the message says what to do."""


# --------------------------------------------------------------------------------------------------------------------
# The topology.


def topology_name(name: str) -> str:
    """`v5e:2x4` as is; the slice names `v5e-8` / `v5litepod-8` -> `v5e:2x4` (v5e slices of 1 or 4 to 256 chips)."""
    match = re.fullmatch(r"(?:v5e|v5litepod)-(\d+)", name.strip())
    if match:
        chips = int(match.group(1))
        if chips not in _V5E_SHAPES:
            raise DryRunError(
                f"--dry_run={name}: v5e slices have {sorted(_V5E_SHAPES)} chips here; or give a "
                f"topology such as v5e:2x4."
            )
        return f"v5e:{_V5E_SHAPES[chips]}"
    return name.strip()


def topology_devices(name: str) -> list[Any]:
    """The chips of TPU topology `name` (e.g. "v5e:2x4", "v5e-8"), compiled for on this host by libtpu.

    Raises DryRunError when libtpu is not installed or the name is not a topology libtpu knows.
    """
    if importlib.util.find_spec("libtpu") is None:
        raise DryRunError(f"--dry_run needs libtpu (TPU compiler, runs on a CPU host): pip install {LIBTPU_PIN}")
    # libtpu takes a machine-wide lock file by default; compiling for a topology needs no exclusive TPU access.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    full = topology_name(name)
    # A slice smaller than a 2x2 host (v5e:1x1, one chip) is its own host; libtpu assumes 2x2 hosts unless told.
    dims = re.fullmatch(r"v5e:(\d+)x(\d+)", full)
    small = dims and int(dims.group(1)) * int(dims.group(2)) < 4
    host = dict(chips_per_host_bounds=(int(dims.group(1)), int(dims.group(2)), 1)) if small else {}
    try:
        return list(topologies.get_topology_desc(platform="tpu", topology_name=full, **host).devices)
    except Exception as e:  # libtpu reports bad names as a runtime error
        raise DryRunError(
            f"--dry_run={name}: libtpu does not know topology {full!r} ({' '.join(str(e).split())}); "
            f"use e.g. v5e:1x1, v5e:2x2, v5e:2x4, v5e:4x4, v5e:4x8, v5e:8x8 (or v5e-8 ...)."
        ) from None


def chip_of(devices: Sequence[Any]) -> Chip:
    """The `Chip` of the topology's devices (DryRunError for a kind not in CHIPS)."""
    kind = devices[0].device_kind
    if kind not in CHIPS:
        raise DryRunError(f"no chip data for device kind {kind!r}; known: {sorted(CHIPS)}.")
    return CHIPS[kind]


# --------------------------------------------------------------------------------------------------------------------
# The run's set-up, without data, checkpoint or tokenizer.


class _Setup(ModelSetup):
    """What `trainers.state.State` reads from a run's set-up, built from the config alone.

    cfg, mesh, model, shapes, specs, total_steps, ..., with the trainer's checks and messages.
    """

    def __init__(self, cfg, devices: Sequence[Any]):
        super().__init__(cfg, devices, data_shards=None)
        try:
            self.total_steps = config_lib.num_steps(cfg, None)
        except ConfigError:
            self.total_steps = PLACEHOLDER_STEPS
        self.evaluators = {}
        if cfg.evals:
            try:
                self.evaluators = common.build_evaluators(cfg.evals, model=self.eval_model, tokenizer_path=None)
            except ValueError as e:
                raise ConfigError(f"config.evals: {one_line(e)}") from None


def text_len(pp: str, what: str, ops: Sequence[str] = ("tok_paligemma",)) -> int:
    """N of the first `tok_paligemma(text_len=N)` (or another op of `ops`) in a pp string; ConfigError if none."""
    try:
        specs = pp_grammar.parse(pp)  # the pipeline's own parser (no TensorFlow)
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None
    for op in ops:
        for name, _, kwargs in specs:
            if name == op and isinstance(kwargs.get("text_len"), int):
                return kwargs["text_len"]
    raise ConfigError(
        f"{what}: no {' or '.join(f'{op}(text_len=N)' for op in ops)} in the pp string; the dry run "
        f"reads the text length from it."
    )


def _image_shape(model_config: Mapping[str, Any]) -> tuple[int, int]:
    return siglip.SiglipConfig(**{"num_classes": None, **dict(model_config["img"])}).image_hw


# The pp ops that give an example several images / frames, and their default `num_frames` (datasets/pp/ops_video.py).
_FRAME_OPS = {"frames_from_images": 2, "frames_from_video": 16}


def num_frames(pp: str, what: str) -> int | None:
    """F of a pp string's `frames_from_images` / `frames_from_video` op (None: one image per example)."""
    try:
        specs = pp_grammar.parse(pp)
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None
    for name, _, kwargs in specs:
        if name in _FRAME_OPS:
            return int(kwargs.get("num_frames", _FRAME_OPS[name]))
    return None


def _image_inputs(model_config, pp: str, what: str, rows: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    """The abstract batch's image entries: `image [B, H, W, 3]`, or `[B, F, H, W, 3]` + `frame_mask [B, F]`."""
    h, w = _image_shape(model_config)
    frames = num_frames(pp, what)
    if frames is None:
        return {"image": ((rows, h, w, 3), jnp.float32)}
    return {"image": ((rows, frames, h, w, 3), jnp.float32), "frame_mask": ((rows, frames), jnp.int32)}


def _abstract(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _batch_struct(mesh, shapes: Mapping[str, tuple[tuple[int, ...], Any]]) -> dict[str, jax.ShapeDtypeStruct]:
    """Abstract batch: rows over the batch axes when they divide the batch, else replicated (as `put_batch`)."""
    out = {}
    for name, (shape, dtype) in shapes.items():
        split = shape[0] % sharding.data_parallel_size(mesh) == 0
        out[name] = jax.ShapeDtypeStruct(
            shape, dtype, sharding=sharding.batch_sharding(mesh) if split else sharding.replicated(mesh)
        )
    return out


def _shard_bytes(structs: Any) -> int:
    """Bytes per chip of a tree of sharded ShapeDtypeStructs (the largest shard; int4 packed 2 per byte, as on TPU)."""
    total = 0
    for x in jax.tree.leaves(structs):
        shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += math.ceil(math.prod(shape) * jax.dtypes.itemsize_bits(x.dtype) / 8)
    return total


# --------------------------------------------------------------------------------------------------------------------
# FLOPs.


def analytic_forward_flops(
    model_config: Mapping[str, Any],
    batch: int,
    text_positions: int,
    logit_positions: int | None = None,
    frames: int = 1,
) -> dict[str, float]:
    """Matmul FLOPs (2 per multiply-add) of one forward pass of `batch` examples with `text_positions` text tokens.

    Returns {"img_layers", "llm_layers", "other"}: the scanned layers of the image encoder and the decoder, and the
    rest (patch embedding, image head, output projection over `logit_positions` positions per example, default all
    text positions). Attention counts the full (masked) score matrix, as the model computes it. `frames`: images per
    example, each encoded on its own, their tokens all in the decoder's sequence.
    """
    img = siglip.SiglipConfig(**{"num_classes": None, **dict(model_config["img"])})
    llm = gemma.GemmaConfig(**dict(model_config["llm"]))
    n, w, m, p = img.num_tokens, img.width, img.mlp_dim, img.patch_size
    img_layer = 2 * frames * n * (4 * w * w + 2 * n * w + 2 * w * m)
    s, d, f = frames * n + text_positions, llm.width, llm.mlp_dim
    qkv = llm.num_heads + 2 * llm.num_kv_heads
    llm_layer = (
        2
        * s
        * (d * qkv * llm.head_dim + 2 * s * llm.num_heads * llm.head_dim + llm.num_heads * llm.head_dim * d + 3 * d * f)
    )
    logits = text_positions if logit_positions is None else logit_positions
    other = 2 * frames * n * (p * p * 3 * w + w * d) + 2 * logits * d * llm.vocab_size
    return {
        "img_layers": batch * img.depth * img_layer,
        "llm_layers": batch * llm.depth * llm_layer,
        "other": batch * other,
    }


def analytic_decode_flops(model_config: Mapping[str, Any], rows: int, cache_size: int, steps: int) -> float:
    """Matmul FLOPs of `steps` one-token decoder steps of `rows` sequences attending over `cache_size` positions."""
    llm = gemma.GemmaConfig(**dict(model_config["llm"]))
    d, hd = llm.width, llm.head_dim
    layer = 2 * (
        d * (llm.num_heads + 2 * llm.num_kv_heads) * hd
        + 2 * cache_size * llm.num_heads * hd
        + llm.num_heads * hd * d
        + 3 * d * llm.mlp_dim
    )
    return float(rows * steps * (llm.depth * layer + 2 * d * llm.vocab_size))


def analytic_train_flops(
    model_config: Mapping[str, Any],
    batch: int,
    text_positions: int,
    frames: int = 1,
    logit_positions: int | None = None,
) -> dict[str, float]:
    """{"model": 3 x forward (forward + backward), "hardware": + one more forward of each rematerialised stack}.

    `logit_positions`: as in `analytic_forward_flops` (default: the output projection at every text position).
    """
    fwd = analytic_forward_flops(model_config, batch, text_positions, logit_positions=logit_positions, frames=frames)
    model = 3 * sum(fwd.values())
    remat = 0.0
    for section, key in (("img", "img_layers"), ("llm", "llm_layers")):
        policy = model_config[section].get("remat_policy", "none")
        if policy == "full":
            remat += fwd[key]
    return {"model": model, "hardware": model + remat}


_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*->.*\{\s*$")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_SHAPE = re.compile(r"^[a-z0-9]+\[([\d,]*)\]")


def _split_type(rhs: str) -> tuple[str, str]:
    """'TYPE op(...), attrs' -> (TYPE, 'op(...), attrs'); TYPE may be a parenthesised tuple."""
    if rhs.startswith("("):
        depth = 0
        for i, c in enumerate(rhs):
            depth += c == "("
            depth -= c == ")"
            if depth == 0:
                return rhs[: i + 1], rhs[i + 1 :].strip()
    head, _, rest = rhs.partition(" ")
    return head, rest.strip()


def _operands(call: str) -> tuple[str, list[str], str]:
    """'op(a, b), attrs' -> (op, [operand names], attrs)."""
    op, _, rest = call.partition("(")
    depth, end = 1, len(rest)
    for i, c in enumerate(rest):
        depth += c in "({"
        depth -= c in ")}"
        if depth == 0:
            end = i
            break
    names = re.findall(r"%([\w.\-]+)", rest[:end])
    return op.strip(), names, rest[end + 1 :]


def _dims(type_text: str) -> list[int] | None:
    match = _SHAPE.match(type_text)
    if not match:
        return None
    return [int(v) for v in match.group(1).split(",") if v]


_ITEMSIZE = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "bf16": 2,
    "f16": 2,
    "s16": 2,
    "u16": 2,
    "f32": 4,
    "s32": 4,
    "u32": 4,
    "f64": 8,
    "s64": 8,
    "u64": 8,
    "c64": 8,
    "c128": 16,
}
# Instructions that move no data of their own (aliases, views, control).
_NO_TRAFFIC = {
    "parameter",
    "constant",
    "tuple",
    "get-tuple-element",
    "bitcast",
    "after-all",
    "partition-id",
    "replica-id",
    "custom-call",
    "copy-done",
    "all-gather-done",
    "all-reduce-done",
    "collective-permute-done",
    "async-done",
    "send-done",
    "recv-done",
    "opt-barrier",
}


def _type_bytes(type_text: str) -> int:
    """Bytes of an HLO type (`bf16[2,3]{...}` or a tuple of them)."""
    return sum(
        _ITEMSIZE.get(dtype, 0) * math.prod(int(v) for v in dims.split(",") if v)
        for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", type_text)
    )


class _Hlo:
    """Matmul FLOPs of an optimised HLO module text, with while-loop bodies counted once or `trip count` times."""

    def __init__(self, text: str):
        self.comps: dict[str, list[tuple[str, str, str]]] = {}
        self.entry = None
        current = None
        for line in text.splitlines():
            header = _COMP.match(line)
            if header and not line.startswith(" "):
                current = header.group(1)
                self.comps[current] = []
                if line.startswith("ENTRY"):
                    self.entry = current
                continue
            instr = _INSTR.match(line)
            if instr and current is not None:
                type_text, call = _split_type(instr.group(2).strip())
                self.comps[current].append((instr.group(1), type_text, call))
        self._memo: dict[tuple[str, bool], float] = {}

    def flops(self, loops: bool) -> float:
        """Matmul FLOPs of the entry computation (`loops`: multiply while bodies by their trip counts)."""
        return self._comp(self.entry, loops)[0] if self.entry else 0.0

    def bytes(self, loops: bool) -> float:
        """HBM bytes read and written by the entry computation's (unfused) instructions.

        Each instruction's operands and result, a fusion as one instruction (`loops`: multiply while bodies by their
        trip counts).
        """
        return self._comp(self.entry, loops)[1] if self.entry else 0.0

    def _comp(self, name: str, loops: bool) -> tuple[float, float]:
        key = (name, loops)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = (0.0, 0.0)  # recursion guard
        instrs = self.comps.get(name, [])
        shapes = {n: t for n, t, _ in instrs}
        calls_by_name = {n: c for n, _, c in instrs}
        flops = nbytes = 0.0
        for _, type_text, call in instrs:
            op, operands, attrs = _operands(call)
            if op in ("convolution", "dot"):
                flops += self._matmul(op, type_text, operands, attrs, shapes)
            if op == "while":
                body = re.search(r"body=%?([\w.\-]+)", attrs)
                cond = re.search(r"condition=%?([\w.\-]+)", attrs)
                trips = (
                    self._trips(cond.group(1), body.group(1) if body else "", operands, calls_by_name)
                    if (loops and cond)
                    else 1
                )
                if body:
                    inner = self._comp(body.group(1), loops)
                    flops, nbytes = flops + trips * inner[0], nbytes + trips * inner[1]
                continue
            called = re.findall(r"(?:calls|to_apply|true_computation|false_computation)=%?([\w.\-]+)", attrs)
            branches = re.search(r"branch_computations=\{([^}]*)\}", attrs)
            if op == "conditional":
                names = re.findall(r"%?([\w.\-]+)", branches.group(1)) if branches else called
                inner = max((self._comp(c, loops) for c in names), default=(0.0, 0.0))
                flops, nbytes = flops + inner[0], nbytes + inner[1]
            elif op == "call":
                for c in called:
                    inner = self._comp(c, loops)
                    flops, nbytes = flops + inner[0], nbytes + inner[1]
            elif op == "fusion" or op.endswith("-start"):
                flops += sum(self._comp(c, loops)[0] for c in called)
            if op not in _NO_TRAFFIC and op != "conditional" and op != "call":
                nbytes += self._traffic(op, type_text, operands, called, shapes)
        self._memo[key] = (flops, nbytes)
        return flops, nbytes

    def _traffic(
        self, op: str, type_text: str, operands: list[str], called: list[str], shapes: dict[str, str]
    ) -> float:
        """HBM bytes of one instruction: its operands and result.

        Except that a (dynamic-)slice reads only the slice and a dynamic-update-slice writes only the update in place
        (also inside a fusion: the scanned layers read their weights from the stacked arrays this way).
        """
        sizes = [_type_bytes(shapes.get(o, "")) for o in operands]
        out = _type_bytes(type_text)
        if op in ("dynamic-slice", "slice", "gather"):
            return 2.0 * out
        if op == "dynamic-update-slice":
            return 2.0 * (sizes[1] if len(sizes) > 1 else out)
        if op != "fusion" or not called:
            return float(out + sum(sizes))
        fused = self.comps.get(called[0], [])
        params = {}
        for n, _, c in fused:
            m = re.match(r"parameter\((\d+)\)", c)
            if m:
                params[n] = int(m.group(1))
        uses: dict[int, list[tuple[str, str, list[str]]]] = {}
        for _, t, c in fused:
            fop, fops, _ = _operands(c)
            for position, name in enumerate(fops):
                if name in params:
                    uses.setdefault(params[name], []).append((fop, t, [position]))
        total = 0.0
        for i, size in enumerate(sizes):
            users = uses.get(i, [])
            if users and all(u[0] in ("dynamic-slice", "slice", "gather") and u[2] == [0] for u in users):
                total += sum(_type_bytes(u[1]) for u in users)
            elif users and all(u[0] == "dynamic-update-slice" and u[2] == [0] for u in users):
                continue  # the buffer updated in place
            else:
                total += size
        root_op, root_ops, _ = _operands(fused[-1][2]) if fused else ("", [], "")
        if root_op == "dynamic-update-slice" and len(root_ops) > 1:
            fshapes = {n: t for n, t, _ in fused}
            return total + _type_bytes(fshapes.get(root_ops[1], ""))
        return total + out

    @staticmethod
    def _matmul(op: str, type_text: str, operands: list[str], attrs: str, shapes: dict[str, str]) -> float:
        out = _dims(type_text)
        if out is None or len(operands) < 2:
            return 0.0
        if op == "dot":
            lhs = _dims(shapes.get(operands[0], ""))
            contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", attrs)
            if lhs is None or not contracting:
                return 0.0
            k = math.prod(lhs[int(i)] for i in contracting.group(1).split(",") if i)
            return 2.0 * math.prod(out) * k
        lhs, rhs = _dims(shapes.get(operands[0], "")), _dims(shapes.get(operands[1], ""))
        labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", attrs)
        if (
            lhs is None
            or rhs is None
            or not labels
            or [len(x) for x in labels.groups()] != [len(lhs), len(rhs), len(out)]
        ):
            return 0.0
        lhs_l, rhs_l, out_l = labels.groups()
        window = re.search(r"window=\{([^}]*)\}", attrs)
        fields = dict(kv.split("=", 1) for kv in window.group(1).split()) if window else {}
        per_dim = lambda key, default: [v for v in fields[key].split("x")] if key in fields else None  # noqa: E731
        sizes, strides = per_dim("size", None), per_dim("stride", None)
        pads, lhs_dil, rhs_dil = per_dim("pad", None), per_dim("lhs_dilate", None), per_dim("rhs_dilate", None)
        macs = math.prod(rhs[i] for i, label in enumerate(rhs_l) if label == "i")
        macs *= math.prod(out[i] for i, label in enumerate(out_l) if label in "bf")
        for j in range(sum(c.isdigit() for c in out_l)):
            d = str(j)
            in_size, out_size = lhs[lhs_l.index(d)], out[out_l.index(d)]
            k_size = int(sizes[j]) if sizes else rhs[rhs_l.index(d)]
            stride = int(strides[j]) if strides else 1
            pad_lo = int(pads[j].split("_")[0]) if pads else 0
            dl, dr = (int(lhs_dil[j]) if lhs_dil else 1), (int(rhs_dil[j]) if rhs_dil else 1)
            if out_size * k_size > 2**24:  # too many pairs to count: the dense estimate
                macs *= out_size * k_size // dl
                continue
            pos = np.arange(out_size)[:, None] * stride + np.arange(k_size)[None, :] * dr - pad_lo
            macs *= int(np.sum((pos >= 0) & (pos <= (in_size - 1) * dl) & (pos % dl == 0)))
        return 2.0 * macs

    def _trips(self, cond: str, body: str, operands: list[str], calls_by_name: dict[str, str]) -> int:
        """Trip count of a `counter < N` loop: (N - start) / step, rounded up.

        start when the counter starts at a constant (XLA may peel the first iteration), step when the body adds a
        constant to it (XLA unrolls loops, e.g. the windowed einsums of sharded matmuls by 2); the largest constant of
        the condition when it is not of that form.
        """
        instrs = self.comps.get(cond, [])
        consts = {n: int(m.group(1)) for n, _, c in instrs for m in [re.match(r"constant\((-?\d+)\)", c)] if m}
        for _, _, c in instrs:
            op, ops, attrs = _operands(c)
            if op == "compare" and "direction=LT" in attrs and len(ops) == 2 and ops[1] in consts:
                index = None
                for n2, _, c2 in instrs:
                    if n2 == ops[0]:
                        m = re.search(r"get-tuple-element\(.*index=(\d+)", c2)
                        index = int(m.group(1)) if m else None
                start = self._start(operands, index, calls_by_name)
                return max(1, -(-(consts[ops[1]] - start) // self._step(body, index)))
        return max([v for v in consts.values() if v > 0], default=1)

    def _step(self, body: str, index: int | None) -> int:
        """The constant the loop body adds to tuple element `index` (the counter); 1 when not found."""
        instrs = self.comps.get(body, [])
        if index is None or not instrs:
            return 1
        by_name = {n: c for n, _, c in instrs}
        op, elems, _ = _operands(instrs[-1][2])
        if op != "tuple" or index >= len(elems):
            return 1
        op, ops, _ = _operands(by_name.get(elems[index], ""))
        if op != "add":
            return 1
        for name in ops:
            m = re.match(r"constant\((\d+)\)", by_name.get(name, ""))
            if m and int(m.group(1)) > 0:
                return int(m.group(1))
        return 1

    @staticmethod
    def _start(operands: list[str], index: int | None, calls_by_name: dict[str, str]) -> int:
        if index is None or not operands:
            return 0
        tup = calls_by_name.get(operands[0], "")
        op, elems, _ = _operands(tup)
        if op != "tuple" or index >= len(elems):
            return 0
        name = elems[index]
        for _ in range(4):  # through copies to a constant
            call = calls_by_name.get(name, "")
            m = re.match(r"constant\((-?\d+)\)", call)
            if m:
                return int(m.group(1))
            op, ops, _ = _operands(call)
            if op != "copy" or not ops:
                return 0
            name = ops[0]
        return 0


# --------------------------------------------------------------------------------------------------------------------
# Compiling.


@dataclasses.dataclass
class Program:
    """One compiled program's per-chip numbers (bytes, FLOPs, seconds); `error` when XLA ran out of memory."""

    name: str
    args: dict[str, int]  # argument bytes per chip by category (params, opt_state, batch, ...)
    temp: float = 0.0  # activations + temporaries (XLA)
    outputs: float = 0.0  # outputs not aliased with donated arguments
    resident: float = 0.0  # other bytes on the chip meanwhile (the optimizer state during evals)
    xla_flops: float = 0.0  # XLA cost_analysis, loop bodies once
    flops: float = 0.0  # XLA's count corrected for loop trip counts
    loop_factor: float = 1.0
    bytes_accessed: float = 0.0  # XLA cost_analysis, corrected like flops
    analytic_flops: float = 0.0  # per chip
    analytic_model_flops: float = 0.0  # per chip, without rematerialisation
    compile_seconds: float = 0.0
    error: str | None = None
    full_batch_matmuls: float = 0.0  # share of the matmuls whose result holds the whole batch on each chip

    @property
    def total(self) -> float:
        """Bytes per chip: arguments, temporaries, outputs and what stays resident meanwhile."""
        return sum(self.args.values()) + self.temp + self.outputs + self.resident


_OOM = re.compile(r"HLO temporaries \(([\d.]+)([KMGT]?)\).*?available HBM \(([\d.]+)([KMGT]?)\)", re.S)
_UNIT = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _compile(program: Program, lowered, chip: Chip, batch_rows: tuple[int, int] | None = None) -> tuple[Any, Chip]:
    """Compiles; fills memory and cost fields of `program`. Returns (compiled or None, chip with XLA's usable HBM).

    `batch_rows` = (global batch, rows per chip when split): measures `full_batch_matmuls`, the share of the compiled
    matmuls whose result has the global batch as leading dim (XLA kept the whole batch on every chip).
    """
    t0 = time.time()
    try:
        compiled = lowered.compile()
    except Exception as e:  # XLA's RESOURCE_EXHAUSTED comes as a runtime error
        program.compile_seconds = time.time() - t0
        text = " ".join(str(e).split())
        match = _OOM.search(text)
        if "RESOURCE_EXHAUSTED" not in text or not match:
            raise
        program.temp = float(match.group(1)) * _UNIT[match.group(2)]
        program.error = text[:400]
        return None, dataclasses.replace(chip, usable=float(match.group(3)) * _UNIT[match.group(4)])
    program.compile_seconds = time.time() - t0
    mem = compiled.memory_analysis()
    program.temp = float(mem.temp_size_in_bytes)
    program.outputs = float(max(0, mem.output_size_in_bytes - mem.alias_size_in_bytes))
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    hlo = _Hlo(compiled.as_text())
    once, full = hlo.flops(loops=False), hlo.flops(loops=True)
    program.xla_flops = float(cost.get("flops", 0.0))
    program.flops = program.xla_flops + full - once  # + the matmuls of the iterations XLA did not count
    program.loop_factor = program.flops / program.xla_flops if program.xla_flops else 1.0
    program.bytes_accessed = float(cost.get("bytes accessed", 0.0)) + hlo.bytes(loops=True) - hlo.bytes(loops=False)
    if batch_rows and batch_rows[0] != batch_rows[1]:
        leading = [
            d[0]
            for comp in hlo.comps.values()
            for _, t, c in comp
            if c.startswith(("convolution(", "dot("))
            for d in [_dims(t)]
            if d
        ]
        program.full_batch_matmuls = sum(d == batch_rows[0] for d in leading) / max(1, len(leading))
    return compiled, chip


def train_pp(cfg: Any) -> tuple[str, str]:
    """(the training pp string, where it is in the config): `input.pp`, or a mixture's first part's own `pp`.

    A mixture whose parts carry their own pp (`input.pp=None`) gives batches of one shape only when all parts produce
    the same keys and text_len (configs/transfer/mix.py); its first part stands for all.
    """
    if cfg.input.pp is not None:
        return cfg.input.pp, "config.input.pp"
    data, where = cfg.input.data, "config.input.data"
    while "mixture" in data:
        first = data["mixture"][0]
        data = first["data"] if "data" in first else first[0]
        where += ".mixture[0]"
    if not data.get("pp"):
        raise ValueError("config.input.pp is None and the data has no pp of its own: set config.input.pp")
    return data["pp"], where + ".pp"


def _train_step(setup: _Setup, chip: Chip) -> tuple[Program, Chip, Any]:
    cfg, mesh = setup.cfg, setup.mesh
    state = State(setup)
    step = state.train_step()
    params = _abstract(setup.shapes, state.param_shardings)
    opt_state = _abstract(state.opt_shapes, state.opt_shardings)
    batch_size = cfg.input.batch_size
    pp, where = train_pp(cfg)
    length = text_len(pp, where)
    batch = _batch_struct(
        mesh,
        {
            **_image_inputs(setup.model_config, pp, where, batch_size),
            **{k: ((batch_size, length), jnp.int32) for k in ("text", "mask_ar", "mask_loss", "mask_input")},
        },
    )
    replicated = sharding.replicated(mesh)
    count = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
    rng = jax.ShapeDtypeStruct(
        np.asarray(jax.random.key_data(jax.random.key(0))).shape, jnp.uint32, sharding=replicated
    )
    program = Program(
        "train_step",
        args=dict(params=_shard_bytes(params), opt_state=_shard_bytes(opt_state), batch=_shard_bytes(batch)),
    )
    lowered = step.lower(params, opt_state, batch, count, rng)
    micro = batch_size // cfg.accum_steps
    _, chip = _compile(program, lowered, chip, (micro, micro // sharding.data_parallel_size(mesh)))
    n = mesh.devices.size
    frames = num_frames(pp, where) or 1
    flops = analytic_train_flops(setup.model_config, batch_size, length - 1, frames=frames)
    program.analytic_flops, program.analytic_model_flops = flops["hardware"] / n, flops["model"] / n
    return program, chip, params


def _eval_programs(setup: _Setup, params: Any, opt_bytes: int, chip: Chip) -> tuple[list[Program], list[str]]:
    """The evaluators' compiled programs (decode prefill + loop, or the perplexity forward) and what was skipped."""
    mesh, model, n = setup.mesh, setup.eval_model, setup.mesh.devices.size
    programs, skipped = [], []
    for name, ev in setup.evaluators.items():
        cfg = ev.config
        bsz = int(cfg["batch_size"])
        dp = sharding.data_parallel_size(mesh)
        rows = (bsz, bsz // dp) if bsz % dp == 0 else None
        where = f"config.evals.{name}.pp"
        if isinstance(ev, tasks.PerplexityEvaluator):
            length = text_len(cfg["pp"], where)
            frames = num_frames(cfg["pp"], where) or 1
            batch = _batch_struct(
                mesh,
                {
                    **_image_inputs(setup.model_config, cfg["pp"], where, bsz),
                    **{k: ((bsz, length), jnp.int32) for k in ("text", "mask_ar", "mask_loss", "mask_input")},
                },
            )
            program = Program(
                f"{name} (perplexity)",
                args=dict(params=_shard_bytes(params), batch=_shard_bytes(batch)),
                resident=opt_bytes,
            )
            _, chip = _compile(program, ev._fn.lower(params, batch), chip, rows)
            program.analytic_flops = program.analytic_model_flops = (
                sum(analytic_forward_flops(setup.model_config, bsz, length - 1, frames=frames).values()) / n
            )
            programs.append(program)
        elif isinstance(ev, common.GenerativeEvaluator):
            length = text_len(cfg["pp"], where, ops=("tok_paligemma_prompt", "tok_paligemma"))
            frames = num_frames(cfg["pp"], where) or 1
            batch = _batch_struct(
                mesh,
                {
                    **_image_inputs(setup.model_config, cfg["pp"], where, bsz),
                    **{k: ((bsz, length), jnp.int32) for k in ("text", "mask_ar", "mask_input")},
                },
            )
            args = (params, *(batch.get(k) for k in ("image", "text", "mask_ar", "mask_input", "frame_mask")))
            prefill = Program(
                f"{name} (decode prefill)",
                args=dict(params=_shard_bytes(params), batch=_shard_bytes(batch)),
                resident=opt_bytes,
            )
            compiled, chip = _compile(prefill, decode._prefill_program(model).lower(*args), chip, rows)
            prefill.analytic_flops = prefill.analytic_model_flops = (
                sum(analytic_forward_flops(setup.model_config, bsz, length, logit_positions=1, frames=frames).values())
                / n
            )
            programs.append(prefill)
            if compiled is None:
                continue
            logits, cache = jax.tree.map(
                lambda s, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                compiled.output_shardings,
                jax.eval_shape(decode._prefill_program(model), *args),
            )
            sampler = decode.parse_sampler(cfg["sampler"])
            replicated = sharding.replicated(mesh)
            scalar = lambda dtype, replicated=replicated: jax.ShapeDtypeStruct((), dtype, sharding=replicated)  # noqa: E731
            key = (
                jax.ShapeDtypeStruct((), jax.eval_shape(lambda: jax.random.key(0)).dtype, sharding=replicated)
                if sampler.stochastic
                else None
            )
            values = {k: scalar(jnp.float32) for k in sampler.runtime_values()}
            loop = Program(
                f"{name} (decode loop, {cfg['max_decode_len']} tokens)",
                args=dict(params=_shard_bytes(params), cache=_shard_bytes((logits, cache))),
                resident=opt_bytes,
            )
            lowered = decode._loop_program(model, sampler.static_key, int(cfg["max_decode_len"])).lower(
                params, logits, cache, key, scalar(jnp.int32), scalar(jnp.int32), values
            )
            _compile(loop, lowered, chip)
            steps = int(cfg["max_decode_len"]) - 1  # the first token comes from the prefill's logits
            loop.analytic_flops = loop.analytic_model_flops = (
                analytic_decode_flops(
                    setup.model_config, bsz * sampler.n, cache["k"].shape[2] + int(cfg["max_decode_len"]), steps
                )
                / n
            )
            programs.append(loop)
        else:
            skipped.append(f"{name} ({ev.TYPE})")
    return programs, skipped


# --------------------------------------------------------------------------------------------------------------------
# The report.


def _eval_advice(setup: _Setup, programs: list[dict]) -> list[str]:
    """When only evaluator programs do not fit: a smaller batch for each such evaluator (its own programs' batch)."""
    out = []
    for name in dict.fromkeys(p["name"].split(" (")[0] for p in programs[1:] if not p["fits"]):
        batch = setup.cfg.evals[name].batch_size
        out.append(
            f"a smaller eval batch: config.evals.{name}.batch_size={max(1, batch // 2)} (now {batch}; the evaluator's "
            f"programs hold the batch's activations and KV cache, beam search one cache per beam)"
        )
    return out


def _advice(setup: _Setup, train_step: Program) -> list[str]:
    cfg, mc = setup.cfg, setup.model_config
    out = []
    no_remat = [s for s in ("img", "llm") if mc[s].get("remat_policy", "none") == "none"]
    if no_remat:
        out.append("rematerialise the layers: " + ", ".join(f"config.model.{s}.remat_policy='full'" for s in no_remat))
    f32 = [s for s in ("img", "llm") if mc[s].get("dtype", "float32") == "float32"]
    if f32:
        out.append("compute in bfloat16: " + ", ".join(f"config.model.{s}.dtype='bfloat16'" for s in f32))
    micro = cfg.input.batch_size // cfg.accum_steps
    dp = sharding.data_parallel_size(setup.mesh)
    if micro > dp:
        out.append(
            f"smaller microbatches: config.accum_steps={cfg.accum_steps * 2} (microbatch {micro} -> "
            f"{micro // 2}, {micro // dp} -> {micro // dp // 2} examples per chip) or a smaller "
            f"config.input.batch_size"
        )
    if train_step.args["params"] + train_step.args["opt_state"] > 0.5 * train_step.total:
        out.append(
            "shard the weights further: more chips (a larger slice), or config.mesh=[('fsdp', -1), "
            "('tensor', 2)] with tensor-parallel rules"
        )
    else:
        out.append("or a larger slice (activations split over more chips)")
    return out


def _gib(x: float) -> str:
    return f"{x / GIB:.2f}"


def format_table(report: Mapping[str, Any]) -> str:
    """The per-chip table of a `plan` report (one row per program)."""
    chip = report["chip"]
    head = (
        f"Dry run: {report['config']} | model {report['model']} ({report['params']:,} params), image "
        f"{report['res']} px, text {report['text_len']} | {report['topology']}: {report['chips']} x {chip['name']} "
        f"(usable HBM {_gib(chip['usable'])} GiB, {chip['peak_flops'] / 1e12:.0f} TFLOP/s bf16, "
        f"{chip['hbm_bandwidth'] / 1e9:.0f} GB/s) | mesh {report['mesh']} | batch {report['batch_size']} "
        f"(accum_steps {report['accum_steps']}) | remat img/llm {report['remat']} | dtype img/llm "
        f"{report['dtype']}"
    )
    programs = report["programs"]
    unit, scale = ("GiB", GIB) if max(p["total"] for p in programs) >= GIB else ("MiB", 2**20)
    funit, fscale = ("TFLOP", 1e12) if max(p["flops"] for p in programs) >= 1e12 else ("GFLOP", 1e9)
    mem = lambda x: f"{x / scale:.2f}"  # noqa: E731
    fl = lambda x: f"{x / fscale:.2f}"  # noqa: E731
    cols = [
        "program",
        "params",
        "opt state",
        "batch/cache",
        "act+temp",
        "out",
        "resident",
        f"total {unit}",
        "HBM %",
        "fits",
        f"XLA {funit}",
        "loop x",
        f"{funit}/chip",
        "analytic",
        "est. ms",
        "MFU %",
        "compile s",
    ]
    rows = [cols]
    for p in programs:
        args = dict(p["args"])
        rows.append(
            [
                p["name"],
                mem(args.pop("params", 0)),
                mem(args.pop("opt_state", 0)),
                mem(sum(args.values())),
                mem(p["temp"]),
                mem(p["outputs"]),
                mem(p["resident"]),
                mem(p["total"]),
                f"{100 * p['total'] / chip['usable']:.0f}",
                "yes" if p["fits"] else "NO",
                fl(p["xla_flops"]),
                f"{p['loop_factor']:.1f}",
                fl(p["flops"]),
                fl(p["analytic_flops"]),
                f"{1e3 * p['step_seconds']:.3g}" if p["step_seconds"] else "-",
                f"{100 * p['mfu']:.0f}" if p["mfu"] else "-",
                f"{p['compile_seconds']:.0f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = [head, f"per chip ({unit}; {funit} per step and chip):"]
    for r in rows:
        lines.append("  " + "  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(r)))
    lines.append(
        "  XLA: cost_analysis (a while body counted once); per chip: XLA + the matmul FLOPs of the loop "
        "iterations it did not count (from the compiled HLO; a decode loop: max_decode_len trips, an upper "
        "bound); loop x = per chip / XLA; analytic: the model's matmuls "
        "(+ recomputed forward with remat 'full'); est. ms: max(FLOPs / peak, bytes / HBM bandwidth); MFU: "
        "analytic model FLOPs (no recompute) / (est. time x peak), an upper bound."
    )
    for p in programs:
        if p["full_batch_matmuls"] > 0.25:
            lines.append(
                f"  {p['name']}: {100 * p['full_batch_matmuls']:.0f}% of the compiled matmuls hold the whole "
                f"(micro)batch on every chip: XLA split the weights' dims instead of the batch (activation "
                f"memory and traffic x the batch shards); activation sharding constraints would fix it."
            )
    if report["skipped"]:
        lines.append(f"  not compiled: {', '.join(report['skipped'])} (no program for this evaluator type)")
    if report["placeholder_steps"]:
        lines.append(
            f"  (total steps unknown without the data: {PLACEHOLDER_STEPS} assumed; only the schedule depends on it)"
        )
    return "\n".join(lines)


def plan(config: Any, topology: str, *, evals: bool = True, config_name: str = "") -> dict[str, Any]:
    """Compiles the run `config` for TPU `topology` and returns the report (JSON-serialisable dict).

    Returns dict(config, model, res, text_len, topology, chips, chip={name, hbm, usable, peak_flops, hbm_bandwidth},
    mesh, batch_size, accum_steps, remat, dtype, params (count), fits (bool), advice [str], skipped [str],
    programs=[{name, args: {params, opt_state, batch | cache: bytes per chip}, temp, outputs, resident, total (bytes
    per chip), fits, xla_flops, loop_factor, flops, analytic_flops, analytic_model_flops (per chip and step),
    bytes_accessed, step_seconds, mfu, compile_seconds, error}]).

    Raises:
      ConfigError: the config cannot run (as `trainers.train` would say).
      DryRunError: libtpu is missing or the topology unknown.
    """
    cfg = config_lib.resolve(config)
    devices = topology_devices(topology)
    chip = chip_of(devices)
    setup = _Setup(cfg, devices)
    train, chip, params = _train_step(setup, chip)
    programs = [train]
    skipped: list[str] = []
    if evals and setup.evaluators:
        with jax.sharding.use_abstract_mesh(setup.mesh.abstract_mesh):  # as trainers.train runs the evaluators
            more, skipped = _eval_programs(setup, params, train.args["opt_state"], chip)
        programs += more
    mc = setup.model_config
    out_programs = []
    for p in programs:
        compute = p.flops / chip.peak_flops
        memory = p.bytes_accessed / chip.hbm_bandwidth
        seconds = max(compute, memory) if p.error is None else 0.0
        out_programs.append(
            dict(
                dataclasses.asdict(p),
                total=p.total,
                fits=p.error is None and p.total <= chip.usable,
                step_seconds=seconds,
                mfu=(p.analytic_model_flops / (seconds * chip.peak_flops)) if seconds else 0.0,
            )
        )
    report = dict(
        config=config_name,
        model=cfg.model_name or "custom",
        res="x".join(map(str, _image_shape(mc))),
        text_len=text_len(*train_pp(cfg)),
        topology=topology_name(topology),
        chips=len(devices),
        chip=dataclasses.asdict(chip),
        mesh=dict(setup.mesh.shape),
        batch_size=cfg.input.batch_size,
        accum_steps=cfg.accum_steps,
        remat="/".join(mc[s].get("remat_policy", "none") for s in ("img", "llm")),
        dtype="/".join(mc[s].get("dtype", "float32") for s in ("img", "llm")),
        params=model_lib.count_params(setup.shapes),
        placeholder_steps=setup.total_steps == PLACEHOLDER_STEPS and cfg.total_steps is None,
        skipped=skipped,
        programs=out_programs,
    )
    report["fits"] = all(p["fits"] for p in out_programs)
    if report["fits"]:
        report["advice"] = []
    elif out_programs[0]["fits"]:  # only evaluator programs (named "<eval> (...)") do not fit
        report["advice"] = _eval_advice(setup, out_programs)
    else:
        report["advice"] = _advice(setup, train)
    return report


def run(config: Any, topology: str, *, json_path: str | None = None, config_name: str = "") -> int:
    """The `--dry_run` CLI: prints the table (and writes the JSON); returns 0 when everything fits, 2 otherwise."""
    try:
        report = plan(config, topology, config_name=config_name)
    except DryRunError as e:
        print(f"Dry run: {e}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    print(format_table(report), flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1, default=str)
    if not report["fits"]:
        worst = [p for p in report["programs"] if not p["fits"]]
        what = "; ".join(f"{p['name']} needs {_gib(p['total'])} GiB" for p in worst)
        print(
            f"Config error: does not fit {report['topology']} ({what} per chip; "
            f"{_gib(report['chip']['usable'])} GiB usable). Change: " + "; ".join(report["advice"]) + ".",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_CONFIG_ERROR
    return 0
