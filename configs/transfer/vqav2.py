r"""VQAv2: fine-tune a pretrained PaliGemma (1 or 2) on visual question answering, scored by VQA accuracy.

    python -m trainers.train --config configs/transfer/vqav2.py --workdir gs://BUCKET/vqav2_224
    python -m trainers.train --config configs/transfer/vqav2.py:res=448,model=paligemma2-3b --workdir ...
    python -m trainers.train --config configs/transfer/vqav2.py:final_split=true --workdir ...   # for the test server
    python -m trainers.train --config configs/transfer/vqav2.py:mode=mock --workdir /tmp/vqav2_mock  # smoke run, CPU

Arguments: res (224 | 448 | 896), model (paligemma-3b | paligemma2-3b | paligemma2-10b | paligemma2-28b),
final_split (train on train+validation and write test-dev predictions), mode (real | mock).

Needs (see the README):
  * `$PALIGEMMA_CKPT_DIR/{model}-pt-{res}.npz` (or .bf16.npz / a PyTorch-hub folder of that name) and
    `$PALIGEMMA_CKPT_DIR/paligemma_tokenizer.model`; `--config.model_init=PATH` / `--config.tokenizer=PATH` point
    elsewhere.
  * the `vqa` TFDS dataset: `python -m datasets.build vqa --manual_dir DIR` (`--help_manual` lists the files);
    `$TFDS_DATA_DIR` or `--config.input.data.data_dir` say where it is.

Recipe (the original transfer, docs/reference.md §5): 10 epochs at batch 256, Adam (b2 0.999), lr 1e-5 with a cosine
schedule and 5% warmup, global-norm clipping at 1, no weight decay, no label smoothing, text_len 32, loss per example,
params FSDP-sharded over all chips. One of the 10 answers is drawn at random for each visit of a question.
Evaluation: VQA accuracy (official normalisation, leave-one-out over the 10 answers) by greedy decoding on a held-out
"minival" (the first 10,000 validation questions; training uses train + the rest of validation), at every 10% of the
run and at the end, plus the perplexity of the answers. With final_split the minival goes into training and the
evaluator writes the test-dev submission file (`{workdir}/evals/`) instead.
The model card's "Eval of VQAv2 transfer" rows, at the end of the run only (or later, on a checkpoint:
`python -m evaluators.run --config configs/transfer/vqav2.py --evals pope_random,pope_popular,pope_adversarial,mmvp
--checkpoint CKPT`), with the VQAv2 prompt `answer en {question}` and greedy answers:
  * POPE (the `pope` dataset: `python -m datasets.build pope --manual_dir DIR`): `pope_random`, `pope_popular`,
    `pope_adversarial`, accuracy of the answer lower-cased being exactly the yes/no label (the `pope` evaluator with
    parse="exact", as big_vision's POPE evaluator; precision, recall and F1 with "yes" positive come along);
    `pope_<setting>/accuracy` are the card's "random/popular/adversarial" numbers (reported x100).
  * MMVP (the `mmvp` dataset: `python -m datasets.build mmvp --manual_dir DIR`): the question alone (MMVP's
    questions name their two options), right when the answer is the correct option's text (case-insensitive) or
    letter; `mmvp/paired_accuracy` (both questions of a pair right) is the card's MMVP number (reported x100).
Compute (configs/common.py `RELEASED_COMPUTE`): bfloat16 activations and matmuls with float32 master weights and
Adam moments, every layer of both towers rematerialised ("full"), the loss's logits only at the suffix tokens.
Slice (configs/common.py `RELEASED_SLICES`, checked with `--dry_run`, README table): 3B (PaliGemma 1 or 2) on v5e-8
at 224 px, v5e-16 at 448, v5e-32 at 896; 10B on v5e-32 (896: v5e-64); 28B on v5e-64 (448 and 896: v5e-128); FSDP
over all chips (28B at 896: plus a tensor axis of 4), accum_steps = batch / (batch shards x examples per shard).
"""

import ml_collections

from configs import common

PROMPT = 'strfmt("answer en {{question}}", outkey="prefix")'  # {{}}: .format() comes later
TRAIN_PP = (
    "decode|resize({res}, antialias=True)|value_range(-1, 1)|"
    + PROMPT
    + '|choice(inkey="answers", outkey="suffix")|tok_paligemma(text_len={text_len})'
    '|keep("image", "text", "mask_ar", "mask_loss", "mask_input")'
)
EVAL_PP = (
    "decode|resize({res}, antialias=True)|value_range(-1, 1)|" + PROMPT + "|tok_paligemma_prompt(text_len={text_len})"
    '|keep("image", "text", "mask_ar", "mask_input", "answers", "answer_type", "question_id")'
)
MINIVAL = "validation[:10000]"
# The model card's "Eval of VQAv2 transfer" rows score the VQAv2 model on other data with its own prompt.
HALLUCINATION_PP = (
    "decode|resize({res}, antialias=True)|value_range(-1, 1)|" + PROMPT + "|tok_paligemma_prompt(text_len={text_len})"
    '|keep("image", "text", "mask_ar", "mask_input", {keys})'
)
POPE_SETTINGS = ("random", "popular", "adversarial")  # the `pope` dataset's splits


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The VQAv2 run; `arg` = "res=224,model=paligemma-3b,final_split=false,mode=real" (any subset)."""
    arg = common.parse_arg(arg, res=224, model="paligemma-3b", final_split=False, mode="real")
    mock = arg.mode == "mock"
    res = common.pp_res(arg)
    text_len = common.text_len(arg, 32)

    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)

    train_split = "train+validation" if arg.final_split else "train+validation[10000:]"
    config.input = dict(
        data=dict(name="vqa", split=train_split),
        batch_size=256,
        shuffle_buffer_size=50_000,
        pp=TRAIN_PP.format(res=res, text_len=text_len),
    )
    config.total_epochs = 10

    common.original_transfer_recipe(config)

    eval_split = "test_dev" if arg.final_split else MINIVAL
    config.evals = {}
    config.evals.vqa = dict(
        type="vqa",
        data=dict(name="vqa", split=eval_split),
        batch_size=256,
        pp=EVAL_PP.format(res=res, text_len=text_len),
        answer_type_key="answer_type",
        max_decode_len=16,
        sampler="greedy",
        log_percent=0.1,
    )
    if not arg.final_split:
        config.evals.answer_ppl = dict(
            type="perplexity",
            data=dict(name="vqa", split=MINIVAL),
            batch_size=256,
            pp=TRAIN_PP.format(res=res, text_len=text_len),
            log_percent=0.1,
        )
    # POPE (yes/no object hallucination, one evaluator per setting) and MMVP (paired accuracy), at the end only.
    for setting in POPE_SETTINGS:
        config.evals[f"pope_{setting}"] = dict(
            type="pope",
            data=dict(name="pope", split=setting),
            batch_size=256,
            pp=HALLUCINATION_PP.format(res=res, text_len=text_len, keys='"answer", "question_id"'),
            answers_key="answer",
            parse="exact",
            max_decode_len=8,
            sampler="greedy",
            log_percent=None,
        )
    config.evals.mmvp = dict(
        type="mmvp",
        data=dict(name="mmvp", split="test"),
        batch_size=256,
        pp=HALLUCINATION_PP.format(res=res, text_len=text_len, keys='"answer", "options", "pair_id", "id"'),
        answer_key="answer",
        choices_key="options",
        pair_key="pair_id",
        id_key="id",
        max_decode_len=16,
        sampler="greedy",
        log_percent=None,
    )
    common.fit_released_slice(config, arg.model, arg.res)  # mesh + accum_steps for the planned TPU slice
    if mock:
        common.mock_mode(config, tokenizer_keys=("question", "answers"), prompts=("answer en",), res=res)
    return config
