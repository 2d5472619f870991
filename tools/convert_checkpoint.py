"""Convert PaliGemma checkpoints between big_vision `.npz`, PyTorch-hub folders and this project's format.

    python -m tools.convert_checkpoint SRC DST [--to npz|hf|ours] [--dtype float32|bfloat16|float16] [--step N]
                                       [--image_size N] [--sliding_window default|hf|N] [--pad_vocab_to N]
    python -m tools.convert_checkpoint runs/easyvqa out_hf --to hf          # export a training run's latest step
    python -m tools.convert_checkpoint runs/lora out_adapter --to peft      # a LoRA run's adapters as a PEFT folder
    python -m tools.convert_checkpoint base.npz out_hf --peft adapter/      # a PEFT LoRA adapter merged into SRC

SRC and DST may be local or gs:// paths. SRC is detected: a `.npz` file, a PyTorch-hub folder (config.json +
*.safetensors), a folder written by this project (config.json + params.npz), a training workdir (its latest readable
checkpoint, or `--step N`; the model config from its run config.json) or one of its step folders
(`{workdir}/checkpoints/{step}`). `--to` defaults to `npz` when DST ends in `.npz`, else `hf` for an `.npz`/own/run
source and `ours` for a PyTorch source. `--to peft` writes a LoRA training run's adapters (only those, for its
base model) as a PEFT adapter folder (adapter_config.json + adapter_model.safetensors); `--peft DIR` merges the PEFT
LoRA adapter in DIR into SRC's weights before writing them (paligemma/checkpoints/peft.py). `--image_size` resamples
the position embedding. A `.npz` carries no config: loading it infers the sizes from the shapes and the Gemma 2 defaults
(soft-caps 30/50, full attention); the other formats keep the config. Exit status 0 on success, 2 on a bad
checkpoint or argument.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from paligemma import checkpoints, cli, paths, tree
from paligemma.checkpoints.formats import step_folder
from paligemma.checkpoints.infer import normalise_config
from paligemma.errors import UserError


class ArgumentError(UserError, ValueError):
    """Arguments that contradict each other or the files they name."""


def _window(value: str):
    if value in ("default", "hf"):
        return value
    if value in ("none", "None", "0"):
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'default', 'hf', 'none' or an int; got {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.convert_checkpoint", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="source checkpoint: .npz file or folder")
    p.add_argument("dst", help="destination: .npz file or folder")
    p.add_argument("--to", choices=("npz", "hf", "ours", "peft"), default=None, help="destination format")
    p.add_argument(
        "--dtype",
        choices=sorted(checkpoints.DTYPES),
        default=None,
        help="cast every array (default: keep the stored dtype)",
    )
    p.add_argument("--step", type=int, default=None, help="a training workdir's step (default: the latest readable)")
    p.add_argument("--image_size", type=int, default=None, help="resample the position embedding to this resolution")
    p.add_argument(
        "--sliding_window",
        type=_window,
        default="default",
        help="Gemma 2 local attention of the loaded config: default (full attention, as the released "
        "weights were trained), hf (the PyTorch port's window), none, or an int",
    )
    p.add_argument(
        "--pad_vocab_to",
        type=int,
        default=None,
        help="--to hf: pad the embedding table to this many rows (the published files use 257216)",
    )
    p.add_argument(
        "--peft",
        default=None,
        metavar="DIR",
        help="merge this PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) into SRC",
    )
    p.add_argument(
        "--base_model",
        default=None,
        help="--to peft: base_model_name_or_path written to adapter_config.json (a hub name or a folder; default: "
        "the run's base checkpoint, from its lora_base.json)",
    )
    return p


def _size_on_disk(path: str) -> int:
    if paths.isdir(path):
        return sum(paths.getsize(f) for f in paths.find(path))
    return paths.getsize(path)


def _summary(config) -> str:
    img, llm = normalise_config(config)  # the sizes of named variants (a training run's config) spelled out
    kind = "Gemma 2" if llm.post_norms else "Gemma"
    return (
        f"SigLIP width {img.width} depth {img.depth} patch {img.patch_size} image {img.image_size} "
        f"(pool {img.pool_type}); {kind} width {llm.width} depth {llm.depth} heads "
        f"{llm.num_heads}/{llm.num_kv_heads} head_dim {llm.head_dim} vocab {llm.vocab_size}"
        f" sliding_window {llm.sliding_window}"
    )


def main(argv: list[str] | None = None) -> int:
    """Converts SRC to DST as `argv` (default: sys.argv) says; returns the exit status (2 on a bad input)."""
    args = _parser().parse_args(argv)
    return cli.run_main(_convert, args)


def _convert(args: argparse.Namespace) -> int:
    if not paths.exists(args.src):
        raise FileNotFoundError(f"{args.src}: no such checkpoint file, folder or training workdir.")
    src_format = checkpoints.detect_format(args.src)
    to = args.to
    if to is None:
        to = "npz" if args.dst.endswith(".npz") else ("ours" if src_format == "hf" else "hf")
    problems = []
    if to == "npz" and paths.isdir(args.dst):
        problems.append(f"{args.dst} is a folder; --to npz writes a file.")
    if to != "npz" and paths.isfile(args.dst):
        problems.append(f"{args.dst} is a file; --to {to} writes a folder.")
    if paths.abspath(args.src) == paths.abspath(args.dst):
        problems.append("SRC and DST are the same path.")
    if args.step is not None and src_format != "run":
        problems.append(f"--step is for a training workdir; {args.src} is a {src_format} checkpoint.")
    if to == "peft" and src_format != "run":
        problems.append(f"--to peft exports a LoRA training run's adapters; {args.src} is a {src_format} checkpoint.")
    if to == "peft" and args.peft:
        problems.append("--peft merges an adapter into SRC; --to peft exports one: give one of them.")
    if args.base_model is not None and to != "peft":
        problems.append("--base_model is for --to peft.")
    if problems:
        raise ArgumentError(problems[0] if len(problems) == 1 else "".join(f"- {p}\n" for p in problems).rstrip())

    if to == "peft":
        return _export_peft(args)
    try:  # a ValueError here is about the checkpoint's content or an argument that does not fit it
        if src_format == "run":  # a training workdir or step folder: the step read is part of what was read
            from paligemma.checkpoints import training  # imports orbax: only for runs

            config, params, step, source = training.load_any(
                args.src,
                dtype=args.dtype,
                step=args.step,
                image_size=args.image_size,
                sliding_window=args.sliding_window,
            )
        else:
            config, params = checkpoints.load(
                args.src, dtype=args.dtype, image_size=args.image_size, sliding_window=args.sliding_window
            )
            source = args.src
        print(f"read {src_format} checkpoint {source}: {_summary(config)}")
        if args.peft:
            params = _merge_peft(args.peft, config, params)
        if to == "npz":
            checkpoints.save_npz(args.dst, params, args.dtype)
        elif to == "hf":
            checkpoints.save_hf(args.dst, params, config, args.dtype, pad_vocab_to=args.pad_vocab_to)
        else:
            checkpoints.save(args.dst, config, params, args.dtype)
    except ValueError as e:
        if isinstance(e, UserError):
            raise
        raise ArgumentError(f"cannot convert {args.src}: {e}") from e

    leaves = list(tree.flatten(params).values())
    count = sum(int(np.prod(x.shape)) for x in leaves)
    dtypes = sorted({args.dtype or str(x.dtype) for x in leaves})
    print(
        f"wrote {to} checkpoint {args.dst}: {count:,} parameters, dtype {'/'.join(dtypes)}, "
        f"{_size_on_disk(args.dst) / 2**20:,.1f} MiB on disk"
    )
    if to == "npz":
        print(
            "note: a .npz holds no config; loading infers the sizes from the shapes (Gemma 2: soft-caps 50/30, "
            "full attention) - pass config= to paligemma.checkpoints.load for anything else."
        )
    return 0


def _merge_peft(folder: str, config, params):
    """`params` with the PEFT LoRA adapter in `folder` merged in (`paligemma.lora.merge`), as numpy arrays."""
    import jax  # the adapter path only

    from paligemma import lora
    from paligemma.checkpoints.peft import load_peft

    lora_config, adapters = load_peft(folder, config)
    merged = lora.merge(tree.unflatten({**tree.flatten(params), **adapters}), config, lora_config)
    print(f"merged PEFT adapter {folder}: {len(adapters) // 2} adapted weights, rank {lora_config.rank}")
    return jax.tree.map(np.asarray, merged)


def _export_peft(args: argparse.Namespace) -> int:
    """`--to peft`: a LoRA training run's adapter factors (its checkpoint params) as a PEFT adapter folder."""
    from paligemma import lora
    from paligemma.checkpoints import training  # imports orbax: only for runs
    from paligemma.checkpoints.peft import save_peft

    workdir, step = step_folder(args.src) or (args.src, args.step)
    run_config = training.read_run_config(workdir) or {}
    if not run_config.get("lora"):
        raise ArgumentError(
            f"{workdir}: its run config has no `lora` section; --to peft exports a LoRA run's adapters."
        )
    try:
        model_config = training.model_config_from(run_config)
        if model_config is None:
            raise ValueError("the run config sets neither model_name nor model")
        lora_config = lora.LoraConfig.from_dict(run_config["lora"])
        step, params = training.latest_params(workdir, step)
        adapters = {k: v for k, v in tree.flatten(params).items() if lora.is_adapter(k)}
        base = args.base_model if args.base_model is not None else training.lora_base(workdir)  # the run's base
        save_peft(adapters, model_config, lora_config, args.dst, base_model_name_or_path=base, dtype=args.dtype)
    except (ValueError, FileNotFoundError) as e:
        if isinstance(e, UserError):
            raise
        raise ArgumentError(f"cannot convert {args.src}: {e}") from e
    print(
        f"wrote peft adapter {args.dst}: {len(adapters) // 2} adapted weights of {workdir} (trainer step {step}), "
        f"rank {lora_config.rank}, alpha {lora_config.alpha:g}, {_size_on_disk(args.dst) / 2**20:,.1f} MiB on disk"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
