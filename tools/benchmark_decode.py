r"""Decoding speed: `python -m tools.benchmark decode [flags]`.

    python -m tools.benchmark decode                                  # paligemma-small, batch 1 and 16, greedy
    python -m tools.benchmark decode --batch_sizes 1,8 --sampler "beam(n=4)" --max_decode_len 16

Random parameters; eos_id is an id the model never produces, so every run generates exactly `max_decode_len` tokens
per example. Per batch size: the first calls compile (compile s: their time beyond a normal run, prefill and loop
programs together), then `repeats` timed runs; the best run is reported (the machine may be shared). "prefill ms"
is a generate with max_decode_len=1 (image + prompt encoding and the first token); ms/token is the time of each
further decoding step (one token for every example of the batch); tokens/s counts the generated tokens of all
examples over the whole generate call.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import numpy as np

from paligemma import decode, quantization
from paligemma import model as pg
from tools.benchmark import print_table, register


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, best seconds of `repeats` further calls); fn blocks until its result is ready."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, min(times)


@register("decode", "generated tokens/s of decode.generate (prefill + on-device loop) on random parameters")
def decode_benchmark(argv: list[str]) -> int:
    """Generated tokens/s of `paligemma.decode.generate` per batch size."""
    p = argparse.ArgumentParser(prog="python -m tools.benchmark decode", description=decode_benchmark.__doc__)
    p.add_argument("--model", default="paligemma-small", help="a paligemma.model.get_config name")
    p.add_argument("--batch_sizes", default="1,16", help="comma-separated batch sizes")
    p.add_argument("--prompt_len", type=int, default=16, help="prompt tokens after the image tokens")
    p.add_argument("--max_decode_len", type=int, default=32)
    p.add_argument("--sampler", default="greedy", help='e.g. "top_k(k=40, t=0.7)", "beam(n=4)"')
    p.add_argument("--repeats", type=int, default=5, help="timed runs per batch size (best reported)")
    p.add_argument("--seed", type=int, default=0)
    dtypes = ("float32", "bfloat16", "float16")
    p.add_argument("--dtype", default="float32", choices=dtypes, help="params dtype")
    p.add_argument("--compute_dtype", default=None, choices=dtypes, help="activations and matmuls (default: --dtype)")
    p.add_argument("--quantize", default=None, choices=quantization.QTYPES, help="weight-only quantization")
    args = p.parse_args(argv)

    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        p.error(f"--batch_sizes must be comma-separated integers, got {args.batch_sizes!r}")
    if args.max_decode_len < 2 or args.prompt_len < 1 or args.repeats < 1 or min(batch_sizes) < 1:
        p.error("need --max_decode_len >= 2, --prompt_len >= 1, --repeats >= 1 and batch sizes >= 1")
    decode.parse_sampler(args.sampler)  # fail early on a bad sampler string

    cfg = pg.get_config(args.model)
    for tower in ("img", "llm"):  # drawn in this dtype directly: no float32 copy of the params ever exists
        cfg[tower]["param_dtype"] = args.dtype
        cfg[tower]["dtype"] = args.compute_dtype or args.dtype
    model = pg.Model(**cfg)
    start = time.perf_counter()
    # A counter-based key, drawn by an optimised program: the values do not matter here, and the default
    # (threefry) key in a quickly compiled program took 3 minutes to draw PaliGemma 3B's 2.9B numbers on a CPU.
    key = jax.random.key(args.seed, impl="unsafe_rbg")
    init = jax.jit(lambda k: pg.init_params(cfg, k))
    params = jax.block_until_ready(init(key))
    if args.quantize:
        model, params = quantization.quantize(model, params, args.quantize)
        params = jax.block_until_ready(params)
    init_s = time.perf_counter() - start
    peak_init = _peak_rss_gib(reset=True)
    (_, height, width, _), _, _ = (x.shape for x in pg.dummy_inputs(cfg))
    vocab = cfg["llm"]["vocab_size"]
    n_params = pg.count_params(pg.param_shapes(cfg))  # the float model's (a quantized weight is two arrays)
    weights_gb = quantization.weight_bytes(params, packed_int4=False) / 1e9
    device = jax.devices()[0]
    print(
        f"model {args.model} ({n_params / 1e6:.1f}M params, {args.dtype}"
        f"{', ' + args.quantize + ' weights' if args.quantize else ''}: {weights_gb:.2f} GB; {height}x{width} px, "
        f"vocab {vocab}), "
        f"prompt {args.prompt_len} tokens, {args.max_decode_len} generated, sampler {args.sampler!r}, "
        f"{jax.device_count()} x {device.platform} ({device.device_kind}); random init {init_s:.1f} s"
    )

    rows = []
    rng = np.random.default_rng(args.seed)
    for batch_size in batch_sizes:
        batch = {
            "image": rng.uniform(-1, 1, (batch_size, height, width, 3)).astype(np.float32),
            "text": rng.integers(3, vocab, (batch_size, args.prompt_len)).astype(np.int32),
            "mask_ar": np.zeros((batch_size, args.prompt_len), np.int32),
            "mask_input": np.ones((batch_size, args.prompt_len), np.int32),
        }

        def run(length, batch=batch):
            out = decode.generate(
                model,
                params,
                batch,
                max_decode_len=length,
                eos_id=-1,
                sampler=args.sampler,
                rng=jax.random.key(args.seed),
            )
            jax.block_until_ready(out)
            assert int(np.min(out["lengths"])) == length

        compile_prefill, prefill = _timed(lambda: run(1), args.repeats)
        compile_full, total = _timed(lambda: run(args.max_decode_len), args.repeats)
        step = (total - prefill) / (args.max_decode_len - 1)
        tokens = batch_size * args.max_decode_len
        compile_s = (compile_prefill - prefill) + (compile_full - total)
        rows.append(
            [
                batch_size,
                f"{1000 * prefill:.1f}",
                f"{1000 * step:.2f}",
                f"{tokens / total:,.0f}",
                f"{1000 * total:.1f}",
                f"{compile_s:.1f}",
            ]
        )
        print(f"  batch {batch_size}: {tokens / total:,.0f} tokens/s", flush=True)
    print()
    print_table(["batch", "prefill ms", "ms/token", "tokens/s", "generate ms", "compile s"], rows)
    generating = _peak_rss_gib()
    print(
        f"peak host memory (RSS): {generating:.2f} GiB while generating"
        + (f", {peak_init:.2f} GiB while drawing the random params" if generating != peak_init else "")
    )
    return 0


def _peak_rss_gib(reset: bool = False) -> float:
    """The most resident memory of this process so far (Linux: since the last reset), in GiB.

    reset: start a new measurement afterwards (Linux `clear_refs`; elsewhere the peak stays the process's).
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    try:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20
        if reset:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident size
    except (OSError, StopIteration):
        pass
    return peak
