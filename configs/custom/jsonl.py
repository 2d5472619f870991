r"""Fine-tune on your own data: a JSONL file of images with a prefix (the prompt) and a suffix (the target text).

    # a small model from scratch (CPU is fine), its tokenizer trained on your texts:
    python -m trainers.train --config configs/custom/jsonl.py:data=my/train.jsonl,val=my/val.jsonl \
        --workdir runs/mine
    # a released model (needs $PALIGEMMA_CKPT_DIR with paligemma-3b-pt-224.npz and paligemma_tokenizer.model):
    python -m trainers.train --config configs/custom/jsonl.py:data=my/train.jsonl,model=paligemma-3b-pt-224 \
        --workdir runs/mine --config.total_steps=500 --config.lr=3e-5

One JSON object per line (`datasets/jsonl.py` has every rule; blank lines are ignored):

    {"image": "images/0001.jpg", "prefix": "caption en", "suffix": "a red car parked next to a tree"}
    {"image": "images/0002.jpg", "prefix": "answer en what colour is the car?", "suffix": "red"}

`image` is a path relative to the JSONL file's folder (or `image_bytes`: the base64 file inline); other fields are
kept and ignored. The model learns to write `suffix` after the image and `prefix`; the loss is on the suffix and
<eos>.

Arguments (`path.py:key=value,...`; all optional but `data`):
  data       the training JSONL file
  val        a validation JSONL file: perplexity of its suffixes, every `eval_every` steps and at the end
  model      a released checkpoint name (`paligemma-3b-pt-224`, `paligemma2-3b-pt-448`, ...: fine-tuned from it,
             with the released tokenizer) or a small variant trained from scratch (`paligemma-tiny` [default],
             `paligemma2-tiny`, `paligemma-small`: a tokenizer of `vocab` pieces is trained on the data's prefixes
             and suffixes and cached in the workdir; the model's vocabulary follows it, see trainers/config.py)
  vocab      pieces of that trained tokenizer before the 1152 loc/seg tokens [1000]; a small file has fewer
             distinct pieces (the error says the most it allows)
  text_len   tokens of prefix + suffix (longer texts are cut, counted in the logs) [64]
  steps      training steps [1000]
  batch      batch size [32]
  lr         peak learning rate [1e-5 for a released model, 1e-3 from scratch]
  eval_every evaluation period in steps [200]

Every key can also be set with `--config.KEY=VALUE`, e.g. `--config.input.data.path=other.jsonl`,
`--config.input.data.skip_bad_rows=True`, `--config.total_steps=50`, `--config.model_init=/ckpt/mine.npz`.
Check the input before training with `python -m datasets.inspect --config configs/custom/jsonl.py:data=...`.
"""

import re

import ml_collections

from configs import common
from paligemma import model as model_lib

RELEASED = re.compile(r"^(paligemma2?-\d+b)-pt-(224|448|896)$")
IMAGE_PP = "decode|resize({res})|value_range(-1, 1)"
TRAIN_PP = IMAGE_PP + '|tok_paligemma(text_len={text_len})|keep("image", "text", "mask_ar", "mask_loss", "mask_input")'


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """A fine-tuning run on `data` (a JSONL file); see the module docstring for `arg`."""
    arg = common.parse_arg(
        arg,
        data="",
        val="",
        model="paligemma-tiny",
        vocab=1000,
        text_len=64,
        steps=1000,
        batch=32,
        lr=0.0,
        eval_every=200,
    )
    config = ml_collections.ConfigDict()
    config.seed = 0
    released = RELEASED.match(arg.model)
    if released:
        res = int(released.group(2))
        common.released_model(config, released.group(1), res)
        lr = 1e-5
    else:
        try:
            res = model_lib.get_config(arg.model)["img"]["image_size"]
        except ValueError as e:
            raise ValueError(
                f"Config argument model={arg.model!r}: not a released checkpoint name (e.g. paligemma-3b-pt-224) "
                f"nor a small variant ({e})"
            ) from None
        config.model_name = arg.model
        config.model_init = None
        # A tokenizer trained on the training data; the model's vocabulary follows its size (llm.vocab_size unset).
        config.tokenizer = dict(
            train=dict(
                data="input.data",  # the training data, also after --config.input.data.path=...
                keys=("prefix", "suffix"),
                vocab_size=arg.vocab,
                extra_texts=[],
            ),
            path="tokenizer.model",
        )
        lr = 1e-3
    # `--config.input.data.path=...` works as it is a plain dict; a placeholder path fails with "JSONL file not found".
    config.input = dict(
        data=dict(name="jsonl", path=arg.data or "train.jsonl", skip_bad_rows=False),
        pp=TRAIN_PP.format(res=res, text_len=arg.text_len),
        batch_size=arg.batch,
        shuffle_buffer_size=10_000,
    )
    config.total_steps = arg.steps
    config.optax_name = "adam"
    config.lr = arg.lr or lr
    config.wd = 0.0
    config.schedule = dict(decay_type="cosine", warmup_percent=0.05)
    config.grad_clip_norm = 1.0
    config.mesh = [("data", -1)]
    config.log_training_steps = 10
    config.ckpt_steps = 500
    config.keep_ckpts = 2
    config.evals = {}
    if arg.val:
        config.evals.val = dict(
            type="perplexity",
            data=dict(name="jsonl", path=arg.val),
            pp=TRAIN_PP.format(res=res, text_len=arg.text_len),
            batch_size=arg.batch,
            log_steps=arg.eval_every,
        )
    config.export_npz = False  # a bool, so that --config.export_npz=True works on the command line
    return config
