"""The segmentation-mask VQ-VAE of PaliGemma (Flax linen; no TensorFlow, no torch).

A 64x64 binary mask is encoded into 16 codebook indices (a 4x4 grid, 128 codes), written by the model as
`<seg000>`..`<seg127>` tokens, and decoded back into 64x64 mask logits (foreground where > 0).

Architecture (docs/reference.md §3; PyTorch `nn.Sequential` indices of the released `vae-oid.npz` in brackets):

  encoder: mask [N,64,64,1] in [-1,1]
    -> 4 x (3x3 conv, stride 2, ReLU)             [encoder.0, .2, .4, .6]  (ReLUs at 1, 3, 5, 7)
    -> 2 x ResBlock                               [encoder.8, encoder.9]
    -> conv to the codebook dimension D            [encoder.10]
    -> nearest codebook entry (squared L2, ties -> lowest index) -> [N,16] indices (row-major 4x4)
  decoder: codebook rows [N,4,4,D]
    -> 1x1 conv to 128, ReLU                       [decoder.0]  (ReLU at 1)
    -> 2 x ResBlock                               [decoder.2, decoder.3]
    -> 4 x (transposed conv k4 s2 (PyTorch padding 1), ReLU) with 128, 64, 32, 16 channels
                                                   [decoder.4, .6, .8, .10]  (ReLUs at 5, 7, 9, 11)
    -> 1x1 conv to 1 channel                       [decoder.12]  -> logits [N,64,64]
  ResBlock(x) = x + net(x), net = 3x3 conv [net.0], ReLU, 3x3 conv [net.2], ReLU, 1x1 conv [net.4].

Expected keys of the released file (PyTorch names; conv `weight` OIHW, transposed-conv `weight`
`(in, out, kH, kW)`, `bias` 1-D)::

  _vq_vae._embedding                                  (128, D)
  encoder.{0,2,4,6,10}.{weight,bias}
  encoder.{8,9}.net.{0,2,4}.{weight,bias}
  decoder.{0,12}.{weight,bias}
  decoder.{2,3}.net.{0,2,4}.{weight,bias}
  decoder.{4,6,8,10}.{weight,bias}                    (ConvTranspose2d)

The loader also accepts residual-block keys without the `.net` level (`encoder.8.0.weight`) and a leading
`module.` prefix, ignores extra `_vq_vae.*` buffers (EMA statistics), validates every shape and raises a
ValueError listing missing / unexpected keys. Channel widths and kernel sizes are read from the arrays, so the
same code serves any width.

Padding of the stride-2 encoder convs: big_vision produced PaliGemma's training targets with TensorFlow
`padding="SAME"` (for 64 -> 32: 0 rows/cols before, 1 after), which differs from a PyTorch `Conv2d(padding=1)`
(1 before, 1 after). `encode` defaults to `"SAME"` (the training-target convention); `padding="TORCH"` gives
the symmetric PyTorch behaviour. The decoder's transposed convs equal PyTorch `ConvTranspose2d(4, 2, padding=1)`
(Flax explicit padding 2 with `transpose_kernel=True` and the kernel laid out `(kH, kW, out, in)`).

Params pytree: `{"codebook": (128, D), "encoder": {...} or None, "decoder": {...}}` (float32).
API: `load_params`, `init_params`, `encode`, `decode` (pure functions, jit-friendly:
`jax.jit(decode)(params, codes)`; for `encode` mark `padding` static).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from paligemma import paths
from paligemma.checkpoints.npz import read_npz

__all__ = [
    "NUM_CODES",
    "NUM_TOKENS",
    "MASK_SIZE",
    "Encoder",
    "Decoder",
    "ResBlock",
    "load_params",
    "params_from_state_dict",
    "init_params",
    "encode",
    "encode_continuous",
    "quantize",
    "decode",
    "expected_keys",
    "encode_jit",
    "decode_jit",
]

NUM_CODES = 128
NUM_TOKENS = 16
MASK_SIZE = 64
_GRID = 4


class ResBlock(nn.Module):
    """`x + conv1x1(relu(conv3x3(relu(conv3x3(x)))))` (PyTorch `net.0`, `net.2`, `net.4`)."""

    features: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        h = nn.Conv(self.features, (k, k), padding="SAME", name="Conv_0")(x)
        h = nn.relu(h)
        h = nn.Conv(self.features, (k, k), padding="SAME", name="Conv_1")(h)
        h = nn.relu(h)
        h = nn.Conv(self.features, (1, 1), padding="VALID", name="Conv_2")(h)
        return x + h


class Encoder(nn.Module):
    """Mask `[N,64,64,1]` in [-1,1] -> continuous latents `[N,4,4,D]` (before quantisation)."""

    channels: Sequence[int] = (16, 32, 64, 128)
    embedding_dim: int = 512
    kernel_size: int = 3
    out_kernel_size: int = 1
    num_res_blocks: int = 2
    res_kernel_size: int = 3
    padding: str = "SAME"  # "SAME" (TensorFlow / big_vision) or "TORCH" (PyTorch padding=k//2 both sides)

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        if self.padding == "SAME":
            pad = "SAME"
        elif self.padding == "TORCH":
            pad = ((k // 2, k // 2), (k // 2, k // 2))
        else:
            raise ValueError(f"padding must be 'SAME' or 'TORCH', got {self.padding!r}")
        for i, c in enumerate(self.channels):
            x = nn.relu(nn.Conv(c, (k, k), strides=(2, 2), padding=pad, name=f"Conv_{i}")(x))
        for i in range(self.num_res_blocks):
            x = ResBlock(self.channels[-1], self.res_kernel_size, name=f"ResBlock_{i}")(x)
        ko = self.out_kernel_size
        return nn.Conv(self.embedding_dim, (ko, ko), padding="SAME", name=f"Conv_{len(self.channels)}")(x)


class Decoder(nn.Module):
    """Codebook rows `[N,4,4,D]` -> mask logits `[N,64,64,1]`."""

    hidden: int = 128
    channels: Sequence[int] = (128, 64, 32, 16)
    num_res_blocks: int = 2
    res_kernel_size: int = 3
    in_kernel_size: int = 1
    out_kernel_size: int = 1

    @nn.compact
    def __call__(self, x):
        ki, ko = self.in_kernel_size, self.out_kernel_size
        x = nn.relu(nn.Conv(self.hidden, (ki, ki), padding="SAME", name="Conv_0")(x))
        for i in range(self.num_res_blocks):
            x = ResBlock(self.hidden, self.res_kernel_size, name=f"ResBlock_{i}")(x)
        for i, c in enumerate(self.channels):
            # == torch ConvTranspose2d(kernel 4, stride 2, padding 1): output 2x the input size.
            x = nn.ConvTranspose(
                c, (4, 4), strides=(2, 2), padding=2, transpose_kernel=True, name=f"ConvTranspose_{i}"
            )(x)
            x = nn.relu(x)
        return nn.Conv(1, (ko, ko), padding="SAME", name="Conv_1")(x)


# ---------------------------------------------------------------------------------------------------------------
# Architecture from the parameter shapes (static under jit).
# ---------------------------------------------------------------------------------------------------------------


def _num_indexed(tree: Mapping, prefix: str) -> int:
    return sum(1 for k in tree if re.fullmatch(rf"{prefix}_\d+", k))


def _encoder_module(enc: Mapping, embedding_dim: int, padding: str) -> Encoder:
    n_res = _num_indexed(enc, "ResBlock")
    n_conv = _num_indexed(enc, "Conv")
    channels = tuple(int(enc[f"Conv_{i}"]["kernel"].shape[-1]) for i in range(n_conv - 1))
    return Encoder(
        channels=channels,
        embedding_dim=embedding_dim,
        kernel_size=int(enc["Conv_0"]["kernel"].shape[0]),
        out_kernel_size=int(enc[f"Conv_{n_conv - 1}"]["kernel"].shape[0]),
        num_res_blocks=n_res,
        res_kernel_size=int(enc["ResBlock_0"]["Conv_0"]["kernel"].shape[0]) if n_res else 3,
        padding=padding,
    )


def _decoder_module(dec: Mapping) -> Decoder:
    n_res = _num_indexed(dec, "ResBlock")
    n_up = _num_indexed(dec, "ConvTranspose")
    # ConvTranspose kernels are (kH, kW, out, in) (transpose_kernel=True).
    channels = tuple(int(dec[f"ConvTranspose_{i}"]["kernel"].shape[2]) for i in range(n_up))
    return Decoder(
        hidden=int(dec["Conv_0"]["kernel"].shape[-1]),
        channels=channels,
        num_res_blocks=n_res,
        res_kernel_size=int(dec["ResBlock_0"]["Conv_0"]["kernel"].shape[0]) if n_res else 3,
        in_kernel_size=int(dec["Conv_0"]["kernel"].shape[0]),
        out_kernel_size=int(dec["Conv_1"]["kernel"].shape[0]),
    )


# ---------------------------------------------------------------------------------------------------------------
# Public functions.
# ---------------------------------------------------------------------------------------------------------------


def init_params(
    rng,
    *,
    embedding_dim: int = 512,
    encoder_channels: Sequence[int] = (16, 32, 64, 128),
    decoder_hidden: int = 128,
    decoder_channels: Sequence[int] = (128, 64, 32, 16),
    num_codes: int = NUM_CODES,
) -> dict:
    """Random parameters with the released layout (for tests and smoke runs).

    Kernels are He-normal (std `sqrt(2 / fan_in)`; for the stride-2 transposed convs `fan_in = kH kW in / 4`)
    so activations stay O(1) through the stack; biases `N(0, 0.01^2)`; codebook `N(0, 1)`. Shapes come from
    `jax.eval_shape` of the Flax modules and values from numpy (eager Flax/XLA initialisers are slow on CPU).

    Args:
      rng: a `jax.random` key (or an int seed). embedding_dim: codebook dimension D. encoder_channels /
        decoder_hidden / decoder_channels: layer widths. num_codes: codebook size (128 for PaliGemma).

    Returns:
      `{"codebook": (num_codes, D), "encoder": {...}, "decoder": {...}}` float32 jax arrays.
    """
    if isinstance(rng, int):
        seed = [rng]
    else:
        key = jnp.asarray(rng)
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        seed = np.asarray(key).astype(np.uint64).reshape(-1).tolist()
    gen = np.random.default_rng(seed)
    enc = Encoder(channels=tuple(encoder_channels), embedding_dim=embedding_dim)
    dec = Decoder(hidden=decoder_hidden, channels=tuple(decoder_channels))
    dummy_key = jax.random.PRNGKey(0)
    enc_shapes = jax.eval_shape(enc.init, dummy_key, jax.ShapeDtypeStruct((1, MASK_SIZE, MASK_SIZE, 1), jnp.float32))
    dec_shapes = jax.eval_shape(
        dec.init, dummy_key, jax.ShapeDtypeStruct((1, _GRID, _GRID, embedding_dim), jnp.float32)
    )

    def fill(path, leaf):
        names = [getattr(p, "key", str(p)) for p in path]
        shape = leaf.shape
        if names[-1] == "kernel":
            kh, kw, a, b = shape
            fan_in = kh * kw * (b / 4 if names[-2].startswith("ConvTranspose") else a)
            value = gen.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        else:
            value = gen.normal(0.0, 0.01, shape)
        return jnp.asarray(value, jnp.float32)

    def build(shapes):
        return dict(jax.tree_util.tree_map_with_path(fill, shapes["params"]))

    codebook = jnp.asarray(gen.normal(0.0, 1.0, (num_codes, embedding_dim)), jnp.float32)
    return {"codebook": codebook, "encoder": build(enc_shapes), "decoder": build(dec_shapes)}


def encode_continuous(params: Mapping, masks, padding: str = "SAME"):
    """Encoder output before quantisation.

    Args:
      params: from `load_params` / `init_params` (needs `params["encoder"]`).
      masks: float `[N,64,64]` (or `[N,64,64,1]`) in [-1, 1] (background -1, foreground +1).
      padding: `"SAME"` (default, big_vision's TensorFlow convention) or `"TORCH"`.

    Returns:
      float32 `[N,4,4,D]`.
    """
    if params.get("encoder") is None:
        raise ValueError("these VQ-VAE params have no encoder (decoder-only file)")
    x = jnp.asarray(masks, jnp.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:] != (MASK_SIZE, MASK_SIZE, 1):
        raise ValueError(f"masks must be [N,{MASK_SIZE},{MASK_SIZE}] or [N,{MASK_SIZE},{MASK_SIZE},1], got {x.shape}")
    codebook = params["codebook"]
    module = _encoder_module(params["encoder"], int(codebook.shape[1]), padding)
    return module.apply({"params": params["encoder"]}, x)


def quantize(codebook, latents):
    """Nearest codebook rows: `argmin_k |z|^2 + |e_k|^2 - 2 z.e_k` (float32; ties -> lowest index).

    Args:
      codebook: `(K, D)`. latents: `[..., D]`.

    Returns:
      int32 indices `[...]`.
    """
    codebook = jnp.asarray(codebook, jnp.float32)
    z = jnp.asarray(latents, jnp.float32)
    flat = z.reshape(-1, z.shape[-1])
    dist = jnp.sum(flat**2, axis=1, keepdims=True) + jnp.sum(codebook**2, axis=1)[None, :] - 2.0 * flat @ codebook.T
    return jnp.argmin(dist, axis=1).astype(jnp.int32).reshape(z.shape[:-1])


def encode(params: Mapping, masks, padding: str = "SAME"):
    """Masks -> 16 codebook indices each.

    Args:
      params: VQ-VAE params. masks: float `[N,64,64]` in [-1, 1] (a {0,1} mask `m` is `2 * m - 1`).
      padding: `"SAME"` (default; matches the targets PaliGemma was trained on) or `"TORCH"`.

    Returns:
      int32 `[N,16]` in 0..127 (row-major 4x4 grid), the `<segNNN>` numbers.
    """
    z = encode_continuous(params, masks, padding)
    return quantize(params["codebook"], z).reshape(z.shape[0], _GRID * _GRID)


def decode(params: Mapping, codes):
    """16 codebook indices -> mask logits.

    Args:
      params: VQ-VAE params. codes: int `[N,16]` (values are clipped to the codebook range).

    Returns:
      float32 `[N,64,64]` logits in roughly [-1, 1]; foreground where `> 0`.
    """
    codes = jnp.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != _GRID * _GRID:
        raise ValueError(f"codes must be [N,{_GRID * _GRID}], got {codes.shape}")
    codebook = jnp.asarray(params["codebook"], jnp.float32)
    idx = jnp.clip(codes.astype(jnp.int32), 0, codebook.shape[0] - 1)
    x = jnp.take(codebook, idx.reshape(-1), axis=0).reshape(codes.shape[0], _GRID, _GRID, codebook.shape[1])
    module = _decoder_module(params["decoder"])
    return module.apply({"params": params["decoder"]}, x)[..., 0]


# ---------------------------------------------------------------------------------------------------------------
# Loading the released PyTorch-named file.
# ---------------------------------------------------------------------------------------------------------------

_ENC_DOWN = (0, 2, 4, 6)
_ENC_RES = (8, 9)
_ENC_OUT = 10
_DEC_IN = 0
_DEC_RES = (2, 3)
_DEC_UP = (4, 6, 8, 10)
_DEC_OUT = 12
_RES_CONVS = (0, 2, 4)
_EMBEDDING = "_vq_vae._embedding"


def expected_keys(include_encoder: bool = True) -> list[str]:
    """The PyTorch key names this loader reads (see the module docstring)."""
    keys = [_EMBEDDING]
    layers = []
    if include_encoder:
        layers += [f"encoder.{i}" for i in (*_ENC_DOWN,)]
        layers += [f"encoder.{b}.net.{j}" for b in _ENC_RES for j in _RES_CONVS]
        layers += [f"encoder.{_ENC_OUT}"]
    layers += [f"decoder.{_DEC_IN}"]
    layers += [f"decoder.{b}.net.{j}" for b in _DEC_RES for j in _RES_CONVS]
    layers += [f"decoder.{i}" for i in _DEC_UP] + [f"decoder.{_DEC_OUT}"]
    for layer in layers:
        keys += [f"{layer}.weight", f"{layer}.bias"]
    return keys


def _to_float32(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "V" and a.dtype.itemsize == 2:  # bfloat16 saved by numpy as raw 2-byte void
        a = a.view(ml_dtypes.bfloat16)
    return a.astype(np.float32)


def params_from_state_dict(state: Mapping[str, np.ndarray], require_encoder: bool = True) -> dict:
    """Converts a PyTorch-named VQ-VAE state dict (`vae-oid.npz` layout) to the Flax params of this module.

    Args:
      state: name -> array (numpy, torch tensors converted with `.numpy()`).
      require_encoder: when False a file without `encoder.*` keys gives `params["encoder"] = None`
        (decode-only).

    Returns:
      The params pytree.

    Raises:
      ValueError: with the list of missing and unexpected keys, or of shape mismatches.
    """
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
    has_encoder = any(k.startswith("encoder.") for k in state)
    want_encoder = require_encoder or has_encoder
    used: set[str] = set()
    missing: list[str] = []
    errors: list[str] = []

    def get(name: str):
        candidates = [name]
        if ".net." in name:
            candidates.append(name.replace(".net.", "."))
        for c in candidates:
            if c in state:
                used.add(c)
                return _to_float32(state[c])
        missing.append(name)
        return None

    def conv(layer: str, transposed: bool = False):
        w, b = get(layer + ".weight"), get(layer + ".bias")
        if w is None or b is None:
            return None
        if w.ndim != 4 or b.ndim != 1:
            errors.append(f"{layer}: weight {w.shape} / bias {b.shape} are not a 2-D conv")
            return None
        out_ch = w.shape[1] if transposed else w.shape[0]
        if b.shape[0] != out_ch:
            errors.append(f"{layer}: bias {b.shape} does not match weight {w.shape}")
        # Conv: OIHW -> HWIO. ConvTranspose: (in, out, kH, kW) -> (kH, kW, out, in) for transpose_kernel=True.
        return {"kernel": jnp.asarray(np.transpose(w, (2, 3, 1, 0))), "bias": jnp.asarray(b)}

    def resblock(prefix: str):
        return {f"Conv_{n}": conv(f"{prefix}.net.{j}") for n, j in enumerate(_RES_CONVS)}

    codebook = get(_EMBEDDING)
    encoder = None
    if want_encoder:
        encoder = {f"Conv_{n}": conv(f"encoder.{i}") for n, i in enumerate(_ENC_DOWN)}
        encoder.update({f"ResBlock_{n}": resblock(f"encoder.{b}") for n, b in enumerate(_ENC_RES)})
        encoder[f"Conv_{len(_ENC_DOWN)}"] = conv(f"encoder.{_ENC_OUT}")
    decoder = {"Conv_0": conv(f"decoder.{_DEC_IN}")}
    decoder.update({f"ResBlock_{n}": resblock(f"decoder.{b}") for n, b in enumerate(_DEC_RES)})
    decoder.update({f"ConvTranspose_{n}": conv(f"decoder.{i}", transposed=True) for n, i in enumerate(_DEC_UP)})
    decoder["Conv_1"] = conv(f"decoder.{_DEC_OUT}")

    unexpected = sorted(
        k for k in state if k not in used and not k.startswith("_vq_vae.") and not k.endswith("num_batches_tracked")
    )
    if missing or unexpected:
        raise ValueError(
            "VQ-VAE state dict does not match the expected layout.\n"
            f"  missing keys ({len(missing)}): {missing}\n"
            f"  unexpected keys ({len(unexpected)}): {unexpected}\n"
            f"  expected: {expected_keys(want_encoder)}"
        )
    if codebook.ndim != 2:
        errors.append(f"{_EMBEDDING}: expected (num_codes, D), got {codebook.shape}")
    if errors:
        raise ValueError("VQ-VAE parameter shapes are inconsistent:\n  " + "\n  ".join(errors))

    params = {"codebook": jnp.asarray(codebook), "encoder": encoder, "decoder": decoder}
    _validate_shapes(params)
    return params


def _chain_error(name, k, expected_in):
    got = k.shape[2]
    return None if got == expected_in else f"{name}: expects {got} input channels, gets {expected_in}"


def _validate_shapes(params: Mapping) -> None:
    errors = []
    d = params["codebook"].shape[1]
    enc = params["encoder"]
    if enc is not None:
        c = 1
        for i in range(len(_ENC_DOWN)):
            k = enc[f"Conv_{i}"]["kernel"]
            errors.append(_chain_error(f"encoder Conv_{i}", k, c))
            c = k.shape[3]
        for b in range(len(_ENC_RES)):
            for j in range(3):
                k = enc[f"ResBlock_{b}"][f"Conv_{j}"]["kernel"]
                errors.append(_chain_error(f"encoder ResBlock_{b}/Conv_{j}", k, c))
                if k.shape[3] != c:
                    errors.append(f"encoder ResBlock_{b}/Conv_{j}: outputs {k.shape[3]} channels, skip has {c}")
        k = enc[f"Conv_{len(_ENC_DOWN)}"]["kernel"]
        errors.append(_chain_error("encoder output conv", k, c))
        if k.shape[3] != d:
            errors.append(f"encoder output conv gives {k.shape[3]} channels, codebook dimension is {d}")
    dec = params["decoder"]
    k = dec["Conv_0"]["kernel"]
    errors.append(_chain_error("decoder Conv_0", k, d))
    c = k.shape[3]
    for b in range(len(_DEC_RES)):
        for j in range(3):
            k = dec[f"ResBlock_{b}"][f"Conv_{j}"]["kernel"]
            errors.append(_chain_error(f"decoder ResBlock_{b}/Conv_{j}", k, c))
            if k.shape[3] != c:
                errors.append(f"decoder ResBlock_{b}/Conv_{j}: outputs {k.shape[3]} channels, skip has {c}")
    for i in range(len(_DEC_UP)):
        k = dec[f"ConvTranspose_{i}"]["kernel"]  # (kH, kW, out, in)
        if k.shape[:2] != (4, 4):
            errors.append(f"decoder ConvTranspose_{i}: kernel {k.shape[:2]}, expected (4, 4)")
        if k.shape[3] != c:
            errors.append(f"decoder ConvTranspose_{i}: expects {k.shape[3]} input channels, gets {c}")
        c = k.shape[2]
    k = dec["Conv_1"]["kernel"]
    errors.append(_chain_error("decoder Conv_1", k, c))
    if k.shape[3] != 1:
        errors.append(f"decoder Conv_1 gives {k.shape[3]} channels, expected 1")
    errors = [e for e in errors if e]
    if errors:
        raise ValueError("VQ-VAE parameter shapes are inconsistent:\n  " + "\n  ".join(errors))


def load_params(path: str | os.PathLike, require_encoder: bool = True) -> dict:
    """Loads the released `vae-oid.npz` (PyTorch-named arrays) into Flax params.

    Args:
      path: the `.npz` file, local or gs:// (`paligemma.paths`).
      require_encoder: see `params_from_state_dict`.

    Returns:
      `{"codebook", "encoder", "decoder"}` float32 params for `encode` / `decode`.

    Raises:
      FileNotFoundError: no such file.
      CheckpointError: a damaged or hostile file (not a zip of arrays, truncated, pickled, sizes that lie).
      ValueError: arrays that do not match the VQ-VAE layout.
    """
    path = os.fspath(path)
    if not paths.isfile(path):
        raise FileNotFoundError(f"{path}: VQ-VAE file not found (the released vae-oid.npz; pass its path).")
    state = read_npz(path)  # checked headers, no pickle; a damaged file is one CheckpointError naming it
    return params_from_state_dict(state, require_encoder=require_encoder)


# Convenience jitted versions.
encode_jit = jax.jit(encode, static_argnames=("padding",))
decode_jit = jax.jit(decode)
