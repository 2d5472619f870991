r"""Training speed: `python -m tools.benchmark train [flags]`, the trainer's own jitted step on random data.

    python -m tools.benchmark train                                   # bench-s: batch 8, text 32, 224 px
    python -m tools.benchmark train --remat full --loss_chunk 4       # the step's options
    python -m tools.benchmark train --scan_unroll 12 --mlp_batched_halves   # the fastest on CPU (README)
    python -m tools.benchmark train --model paligemma-small --batch_size 32 --text_len 48
    python -m tools.benchmark train --profile /tmp/trace              # + a jax.profiler trace of two steps

The step is `trainers.state.State(...).train_step()`, the program `trainers.train` runs (forward, backward, global-norm
clipping, Adam, the finiteness checks), on random parameters and a random batch of the given shape: `prefix_len`
prompt tokens and `text_len - prefix_len` suffix tokens with a loss, as big_vision's and transformers' bench-s
harnesses use. Reported: median step time of `steps` timed steps after the compiling one, examples/s, the model's
FLOPs per example (analytic, `trainers.dry_run.analytic_train_flops`: 3 x the forward matmuls, the output projection
only at the suffix positions, where the loss needs it), the achieved FLOP/s and their fraction of the float32 matmul
peak measured in the same process just before (the best of several [N, N] x [N, N] products).

bench-s (`paligemma-bench-s`): ViT-S/16 at 224 px (196 image tokens) + a Gemma decoder of width 512, depth 6, 8 heads,
1 KV head, head dim 64, MLP 2048 and the released 257,152-entry vocabulary: the reduced PaliGemma of the peer
harnesses (README, Benchmarks).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from tools.benchmark import print_table, register


def matmul_peak(n: int = 2048, repeats: int = 8) -> float:
    """Best float32 FLOP/s of an [n, n] x [n, n] product on the default device (compiled once, timed `repeats`)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _config(args) -> dict:
    remat = dict(remat_policy=args.remat, scan_unroll=args.scan_unroll)
    return dict(
        model_name=args.model,
        model=dict(
            img=dict(remat, **({"image_size": args.res} if args.res else {})),
            llm=dict(remat, **({"mlp_batched_halves": True} if args.mlp_batched_halves else {})),
        ),
        input=dict(
            data=dict(name="never_opened"),
            batch_size=args.batch_size,
            pp=f"tok_paligemma(text_len={args.text_len + 1})",
        ),
        total_steps=1000,
        optax_name="adam",
        optax=dict(b2=0.999),
        lr=1e-5,
        loss_chunk=args.loss_chunk,
        loss_positions=_loss_positions(args),
        mesh=[("data", -1)],
    )


def _loss_positions(args) -> int | None:
    """`--loss_positions` as `config.loss_positions`: "suffix" -> the suffix length, "all" -> None."""
    if args.loss_positions == "suffix":
        return args.text_len + 1 - args.prefix_len
    return None if args.loss_positions == "all" else int(args.loss_positions)


def _batch(model_config, batch_size: int, text_len: int, prefix_len: int, vocab: int, rng) -> dict[str, np.ndarray]:
    """A random batch: `text_len + 1` tokens (inputs are the first `text_len`), a loss on the suffix's tokens."""
    from trainers.dry_run import _image_shape

    h, w = _image_shape(model_config)
    length = text_len + 1
    mask_ar = (np.arange(length) >= prefix_len).astype(np.int32)
    return dict(
        image=rng.uniform(-1, 1, (batch_size, h, w, 3)).astype(np.float32),
        text=rng.integers(3, vocab, (batch_size, length)).astype(np.int32),
        mask_ar=np.tile(mask_ar, (batch_size, 1)),
        mask_loss=np.tile(mask_ar, (batch_size, 1)),
        mask_input=np.ones((batch_size, length), np.int32),
    )


@register("train", "median step time, examples/s and MFU of the trainer's jitted train step on random data")
def train_benchmark(argv: list[str]) -> int:
    """Step time, examples/s, FLOPs and fraction of the measured matmul peak of the trainer's train step."""
    p = argparse.ArgumentParser(prog="python -m tools.benchmark train", description=train_benchmark.__doc__)
    p.add_argument("--model", default="paligemma-bench-s", help="a paligemma.model.get_config name")
    p.add_argument("--res", type=int, default=0, help="image size (0: the model's)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--text_len", type=int, default=32, help="input text positions (prompt + suffix)")
    p.add_argument("--prefix_len", type=int, default=12, help="prompt tokens; the following tokens carry a loss")
    p.add_argument("--remat", default="none", help="remat policy of both towers: none | full | dots_no_batch ...")
    p.add_argument("--scan_unroll", type=int, default=1, help="layers per iteration of both towers' layer scans")
    p.add_argument(
        "--mlp_batched_halves",
        action="store_true",
        help="the decoder MLP's gate/up projections batched over the weight's halves (faster on CPU, see GemmaConfig)",
    )
    p.add_argument(
        "--loss_chunk",
        type=int,
        default=None,
        help="suffix positions whose logits are computed at once (trainer default)",
    )
    p.add_argument(
        "--loss_positions",
        default="suffix",
        help='config.loss_positions: "suffix" (the suffix length, the bound this data has), "all" (None) or an int',
    )
    p.add_argument("--steps", type=int, default=5, help="timed steps after the compiling one (median reported)")
    p.add_argument("--profile", default="", help="write a jax.profiler trace of two more steps to this folder")
    args = p.parse_args(argv)

    from trainers import config as config_lib
    from trainers.dry_run import analytic_train_flops
    from trainers.setup import ModelSetup
    from trainers.state import State

    peak = matmul_peak()
    cfg = config_lib.resolve(_config(args))
    setup = ModelSetup(cfg, jax.devices(), data_shards=None)
    setup.total_steps, setup.init_path = cfg.total_steps, None
    state = State(setup)
    params, opt_state = state.initial(setup, jax.random.key(0))
    step = state.train_step()
    vocab = setup.model_config["llm"]["vocab_size"]
    batch = _batch(setup.model_config, args.batch_size, args.text_len, args.prefix_len, vocab, np.random.default_rng(0))
    rng = np.asarray(jax.random.key_data(jax.random.key(0)))

    def run(count):
        nonlocal params, opt_state
        params, opt_state, metrics = step(params, opt_state, batch, np.int32(count), rng)
        return float(metrics["training_loss"])

    start = time.perf_counter()
    run(0)
    compile_s = time.perf_counter() - start
    times = []
    for i in range(args.steps):
        start = time.perf_counter()
        run(i + 1)
        times.append(time.perf_counter() - start)
    if args.profile:
        with jax.profiler.trace(args.profile):
            run(args.steps + 1)
            run(args.steps + 2)
    median = statistics.median(times)
    suffix = args.text_len + 1 - args.prefix_len  # the targets (text shifted by one) of the suffix tokens
    # The output projection at the loss (suffix) positions only.
    model_flops = analytic_train_flops(setup.model_config, args.batch_size, args.text_len, logit_positions=suffix)[
        "model"
    ]
    print(
        f"{args.model}: batch {args.batch_size}, text {args.text_len} ({args.prefix_len} prompt tokens, {suffix} loss "
        f"positions), "
        f"remat {args.remat}, scan_unroll {args.scan_unroll}, mlp_batched_halves {args.mlp_batched_halves}, "
        f"loss_chunk {args.loss_chunk}, loss_positions "
        f"{_loss_positions(args)}; {jax.devices()[0].platform} x {len(jax.devices())}; "
        f"float32 matmul peak {peak / 1e9:.0f} GFLOP/s"
    )
    print_table(
        ["median step s", "examples/s", "GFLOP/example", "GFLOP/s", "of peak", "compile s"],
        [
            [
                f"{median:.3f}",
                f"{args.batch_size / median:.2f}",
                f"{model_flops / args.batch_size / 1e9:.1f}",
                f"{model_flops / median / 1e9:.1f}",
                f"{100 * model_flops / median / peak:.0f}%",
                f"{compile_s - median:.1f}",
            ]
        ],
    )
    return 0
