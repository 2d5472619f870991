r"""Mix: fine-tune a pretrained PaliGemma on a weighted mixture of the single-image transfer tasks at once.

    python -m trainers.train --config configs/transfer/mix.py --workdir gs://BUCKET/mix_224
    python -m trainers.train --config configs/transfer/mix.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/mix.py:mode=mock --workdir /tmp/mix_mock   # CPU smoke run

Arguments: res (224 | 448), model (paligemma-3b | paligemma2-{3b,10b,28b}), final_split (each task's final
training split, as its own config's final_split), mode (real | mock).

This is the idea of the released "mix" checkpoints: one model that answers every task's prompt ("caption en",
"answer en ...", "segment ...", a bare question for documents and charts), trained on all the tasks together rather
than one transfer per task. The model card's mix rows (MMVP paired accuracy, POPE random/popular/adversarial) are
evaluators of this run; it also runs every task's own evaluators at the end.

Needs (see the README): the released checkpoint and tokenizer, and every dataset in `TASKS` (each task's config
docstring names its `python -m datasets.build` command); leave a task out with
`--config.input.data.mixture=...` or by editing `TASKS`.

Recipe (our choice; the released mix's task proportions are not published): each task's own training split (and
pp: its prompt, its targets, its image ops) from its config in configs/transfer/, the text of every task tokenized to
`TEXT_LEN` tokens so that examples of all tasks batch together; each batch draws its examples from the tasks with the
weights in `TASKS` (equal by default: `datasets.mixture`); 20,000 steps at batch 256 (5.1M examples, about as many
as the single-task transfers together), lr 1e-5, Adam (b2 0.999), cosine with 5% warmup, clipping at 1, no weight
decay, label smoothing 0 (docs/reference.md §5).
Evaluation: at the end, every evaluator of every task in the mix (named as in its config, e.g.
`textvqa_val/accuracy`), plus VQAv2 minival every 10% of the run; the card's mix rows are `mmvp/paired_accuracy` and
`pope_{random,popular,adversarial}/accuracy` (from configs/transfer/vqav2.py).
Compute and slice: as the other released-model transfers (configs/common.py `RELEASED_COMPUTE`, `RELEASED_SLICES`).
"""

import dataclasses
import importlib

import ml_collections

from configs import common

# config module in configs/transfer -> sampling weight. Single-image tasks only (a batch holds one image per example),
# and not ScienceQA: its prompt (question, hint, options) needs 512 tokens.
TASKS = {
    "vqav2": 1.0,
    "okvqa": 1.0,
    "aokvqa_mc": 1.0,
    "aokvqa_da": 1.0,
    "gqa": 1.0,
    "vizwiz_vqa": 1.0,
    "textvqa": 1.0,
    "stvqa": 1.0,
    "docvqa": 1.0,
    "infovqa": 1.0,
    "ocrvqa": 1.0,
    "chartqa": 1.0,
    "ai2d": 1.0,
    "tallyqa": 1.0,
    "rsvqa_lr": 1.0,
    "rsvqa_hr": 1.0,
    "cococap": 1.0,
    "textcaps": 1.0,
    "screen2words": 1.0,
    "widgetcap": 1.0,
    "refcoco_seg": 1.0,
}
TEXT_LEN = 128  # the longest of the tasks' own text_len (A-OKVQA MC and AI2D list their choices in the prompt)


def task_config(task: str, arg: ml_collections.ConfigDict) -> tuple[object, ml_collections.ConfigDict]:
    """(the module of `configs/transfer/<task>.py`, its config for the mix's arguments)."""
    module = importlib.import_module(f"configs.transfer.{task}")
    args = f"res={arg.res},model={arg.model},final_split={arg.final_split},mode={arg.mode}"
    return module, module.get_config(args)


def task_train_pp(module, arg: ml_collections.ConfigDict) -> str:
    """A task's training pp with the mix's `TEXT_LEN`: from its `INPUT` (recipes.Input) or its `TRAIN_PP` template."""
    if hasattr(module, "INPUT"):
        return dataclasses.replace(module.INPUT, text_len=TEXT_LEN).train_pp(arg)
    return module.TRAIN_PP.format(
        res=common.pp_res(arg), text_len=common.text_len(arg, TEXT_LEN), vae=common.vqvae_checkpoint(arg)
    )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The mix run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)
    parts, evals = [], {}
    for task, weight in TASKS.items():
        module, task_cfg = task_config(task, arg)
        data = {k: v for k, v in task_cfg.input.data.items() if k != "mock"}
        parts.append((dict(data, pp=task_train_pp(module, arg)), weight))
        for name, evaluator in task_cfg.evals.items():
            if name in evals:
                raise ValueError(f"mix: two tasks have an evaluator named {name!r}")
            during = (task, name) == ("vqav2", "vqa")  # VQAv2 minival: every 10% of the run
            evals[name] = dict(evaluator.to_dict(), log_percent=0.1 if during else None)
    config.input = dict(data=dict(mixture=parts), pp=None, batch_size=256, shuffle_buffer_size=10_000)
    config.total_steps = 20_000
    common.original_transfer_recipe(config)
    config.evals = evals
    common.fit_released_slice(config, arg.model, arg.res)
    if arg.mode == "mock":
        common.mock_mode(config, tokenizer_keys=("question", "answers"), prompts=("answer en", "caption en", "segment"))
    return config
