"""The parts every transfer config shares: its input, the training run, its evaluators, the slice or mock run.

A config (`configs/transfer/textvqa.py`, `msrvtt_cap.py`, `nlvr2.py`, ...) names what is its own: the dataset, an
`Input` (the image(s) or video, the prompt, the target texts, text_len), the recipe numbers and its evaluators; these
build the rest the same way for all of them:

  Input(media, prompt, target, text_len)    .train_pp / .eval_pp: the pp strings (images or frames at res; in mock
                                            mode the shapes all mock runs share: `common.MOCK_RES` px,
                                            `MOCK_TEXT_LEN` tokens, at most `MOCK_FRAMES` frames), the frame_mask
                                            kept for frames
  training(arg, input, dataset, ...)        the run without evaluators: released model, input, recipe
  generative_eval(type, pp, ...)            an evaluator entry of any generative type (greedy decoding by default)
  caption_eval(pp, ...) / qa_eval(pp, ...)  the common two: captions scored by CIDEr x100 / answers by VQA accuracy
  add_evals(config, arg, evaluator, dataset, {name: split})
                                            the evaluator on each split (the first during the run)
  anls_transfer(arg, input, dataset, {name: split}, label_smoothing=...)
                                            a whole ANLS test-server transfer (InfographicVQA, ST-VQA)
  finish(config, arg, input, num_frames)    the planned slice (`common.fit_released_slice`), or the mock run
                                            (`common.mock_mode`)

Media: "image" (the example's `image`: one picture, decoded and resized to res x res), "images" (the `images`
feature: an image pair or set, `frames_from_images`) or "video" (the `video` feature, `frames_from_video`); the last
two give `image [F, res, res, 3]` and `frame_mask [F]`.
"""

from __future__ import annotations

import dataclasses
import string

import ml_collections

from configs import common

_KEYS = ("image", "text", "mask_ar", "mask_input")
MEDIA_OPS = {"video": "frames_from_video", "images": "frames_from_images"}


def _keep(keys) -> str:
    return "keep(" + ", ".join(f'"{k}"' for k in dict.fromkeys(keys)) + ")"


@dataclasses.dataclass(frozen=True)
class Input:
    """How an example becomes the model's input and target.

    `media`: "image", "images" or "video" (see the module docstring); `prompt`: the prefix, with the example's
    text fields in braces ("answer en {question}"; a list field is joined with ", "); `target`: the field of the
    target text(s); `choose`: the target is a list of references and training draws one per visit (False: one
    text, used as is); `id_key`: the example's id, kept for the evaluators' records and submission files;
    `image_ops`: pp ops on the resized image before `value_range` (e.g. `draw_box(...)`, one image only);
    `lower_target`: train on the lower-cased target; `target_format`: the target is this text formatted from the
    example's fields (`strfmt`, e.g. "The answer is {indexed_answer}."), written to the `target` key.
    """

    media: str
    prompt: str
    target: str
    text_len: int
    choose: bool = True
    id_key: str = "id"
    image_ops: str = ""
    lower_target: bool = False
    target_format: str = ""

    def __post_init__(self):
        if self.media not in ("image", *MEDIA_OPS):
            raise ValueError(f"Input.media must be 'image', 'images' or 'video', got {self.media!r}")
        if self.image_ops and self.media != "image":
            raise ValueError("Input.image_ops apply to one image (media='image')")

    def _pixels(self, arg: ml_collections.ConfigDict, num_frames: int) -> str:
        prompt = f'|value_range(-1, 1)|strfmt("{self.prompt}", outkey="prefix")'
        if self.target_format:
            prompt += f'|strfmt("{self.target_format}", outkey="{self.target}")'
        if self.media == "image":
            ops = f"|{self.image_ops}" if self.image_ops else ""
            return f"decode|resize({common.pp_res(arg)}, antialias=True){ops}" + prompt
        op = MEDIA_OPS[self.media]
        if arg.mode == "mock":
            num_frames = min(num_frames, common.MOCK_FRAMES)
        size = common.pp_res(arg)
        return f'{op}(inkey="{self.media}", outkey="image", num_frames={num_frames}, size={size})' + prompt

    def _model_keys(self) -> tuple[str, ...]:
        return _KEYS if self.media == "image" else (*_KEYS, "frame_mask")

    def train_pp(self, arg: ml_collections.ConfigDict, num_frames: int = 1) -> str:
        """Pixels, prompt, the target (one drawn at random with `choose`), tokens."""
        target = "choice" if self.choose else "copy"
        lower = '|lower(key="suffix")' if self.lower_target else ""
        text_len = common.text_len(arg, self.text_len)
        return (
            f'{self._pixels(arg, num_frames)}|{target}(inkey="{self.target}", outkey="suffix"){lower}'
            f"|tok_paligemma(text_len={text_len})|{_keep((*self._model_keys(), 'mask_loss'))}"
        )

    def eval_pp(self, arg: ml_collections.ConfigDict, num_frames: int = 1, extra_keys: tuple[str, ...] = ()) -> str:
        """Pixels and prompt tokens; keeps the references, the id and `extra_keys` for the evaluator."""
        keys = (*self._model_keys(), self.target, self.id_key, *extra_keys)
        text_len = common.text_len(arg, self.text_len)
        return f"{self._pixels(arg, num_frames)}|tok_paligemma_prompt(text_len={text_len})|{_keep(keys)}"

    def mock_texts(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(the text fields, the prompt's fixed words): what the mock run's tokenizer is trained on."""

        def fields(template):
            return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)

        prompts = (self.prompt.split("{")[0].strip(),)
        if self.target_format:
            return (*fields(self.prompt), *fields(self.target_format)), (*prompts, self.target_format.split("{")[0])
        return (*fields(self.prompt), self.target), prompts


def training(
    arg: ml_collections.ConfigDict,
    inp: Input,
    dataset: str,
    num_frames: int = 1,
    *,
    batch_size: int,
    epochs: float,
    lr: float = 1e-5,
    wd: float = 0.0,
    label_smoothing: float = 0.0,
    shuffle_buffer_size: int = 10_000,
    freeze_image_encoder: bool = False,
    splits: tuple[str, str] = ("train", "train+validation"),
) -> ml_collections.ConfigDict:
    """The run on `dataset` with no evaluators yet.

    The released model `arg.model` at `arg.res`, the original transfer recipe (`common.original_transfer_recipe`)
    with `lr`, weight decay `wd` and `label_smoothing`; `splits`: the training split, and the one with
    `arg.final_split` (train on the validation data too); `freeze_image_encoder`: no gradient and no optimizer
    state for the ViT.
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)
    config.input = dict(
        data=dict(name=dataset, split=splits[1] if arg.final_split else splits[0]),
        batch_size=batch_size,
        shuffle_buffer_size=shuffle_buffer_size,
        pp=inp.train_pp(arg, num_frames),
    )
    config.total_epochs = epochs
    common.original_transfer_recipe(config, label_smoothing=label_smoothing)
    config.lr = lr
    config.wd = wd
    if freeze_image_encoder:
        config.freeze = (r"^img/",)
    config.evals = {}
    return config


def generative_eval(
    type: str, pp: str, *, batch_size: int, max_decode_len: int, sampler: str = "greedy", **kwargs
) -> dict:
    """An evaluator entry of `type` (see `evaluators/tasks.py`); `kwargs` are that type's keys."""
    return dict(type=type, batch_size=batch_size, pp=pp, max_decode_len=max_decode_len, sampler=sampler, **kwargs)


def caption_eval(pp: str, *, batch_size: int, max_decode_len: int, **kwargs) -> dict:
    """A `caption` evaluator entry: greedy captions, CIDEr-D (BLEU-4, ROUGE-L) x100 against all `captions`."""
    kwargs = dict(dict(references_key="captions", id_key="id", score_scale=100.0), **kwargs)
    return generative_eval("caption", pp, batch_size=batch_size, max_decode_len=max_decode_len, **kwargs)


def qa_eval(pp: str, *, batch_size: int, normalize: str, max_decode_len: int, **kwargs) -> dict:
    """A `vqa` evaluator entry: greedy answers, VQA accuracy after `normalize`; `kwargs` go to the evaluator."""
    kwargs = dict(dict(id_key="id"), **kwargs)
    return generative_eval(
        "vqa", pp, batch_size=batch_size, max_decode_len=max_decode_len, normalize=normalize, **kwargs
    )


def add_evals(
    config: ml_collections.ConfigDict,
    arg: ml_collections.ConfigDict,
    evaluator: dict,
    dataset: str,
    splits: dict[str, str],
    *,
    log_percent: float | None = 0.25,
    trained_on: str | None = "validation",
) -> None:
    """`config.evals[name]` = `evaluator` on `dataset`'s split, for each `name: split` in order.

    The first runs every `log_percent` of the run and at the end, the others at the end. With `arg.final_split` the
    splits that start with `trained_on` (the validation splits, trained on) are left out; `trained_on=None` keeps
    them all (a final run that does not train on validation).
    """
    for index, (name, split) in enumerate(splits.items()):
        if arg.final_split and trained_on is not None and split.startswith(trained_on):
            continue
        config.evals[name] = dict(evaluator, data=dict(name=dataset, split=split))
        if index == 0 and log_percent:
            config.evals[name].log_percent = log_percent


# The ANLS text transfers' input: the question as prompt, one of the answers, lower-cased, as the target
ANLS_INPUT = Input(
    "image", prompt="answer en {question}", target="answers", text_len=48, id_key="question_id", lower_target=True
)
# res -> (batch size, lr, weight decay): big_vision's sweep_best of the ANLS text transfers (3 epochs each)
ANLS_RECIPES = {224: (256, 1e-5, 1e-6), 448: (128, 1e-5, 1e-6), 896: (32, 3e-6, 3e-7)}


def anls_transfer(
    arg: ml_collections.ConfigDict,
    inp: Input,
    dataset: str,
    splits: dict[str, str],
    *,
    label_smoothing: float,
    **anls_kwargs,
) -> ml_collections.ConfigDict:
    """A finished run of the InfographicVQA / ST-VQA kind: 3 epochs of `ANLS_RECIPES`, scored by ANLS.

    The batch size, lr and weight decay of `arg.res` (896's otherwise), shuffle buffer 50,000; an `anls` evaluator
    (greedy answers up to `inp.text_len` tokens, batch 256, `inp.id_key` as the id, `anls_kwargs` its other keys)
    on each `name: split` of `splits`, the first every 10% of the run.
    """
    batch_size, lr, wd = ANLS_RECIPES.get(arg.res, ANLS_RECIPES[896])
    config = training(
        arg,
        inp,
        dataset,
        batch_size=batch_size,
        epochs=3,
        lr=lr,
        wd=wd,
        label_smoothing=label_smoothing,
        shuffle_buffer_size=50_000,
    )
    anls = generative_eval(
        "anls", inp.eval_pp(arg), batch_size=256, max_decode_len=inp.text_len, id_key=inp.id_key, **anls_kwargs
    )
    add_evals(config, arg, anls, dataset, splits, log_percent=0.1)
    return finish(config, arg, inp)


def finish(
    config: ml_collections.ConfigDict, arg: ml_collections.ConfigDict, inp: Input, num_frames: int = 1
) -> ml_collections.ConfigDict:
    """Fits the run to the slice planned for `num_frames` images, or turns it into a mock run (after the evals)."""
    common.fit_released_slice(config, arg.model, arg.res, frames=num_frames)
    if arg.mode == "mock":
        keys, prompts = inp.mock_texts()
        common.mock_mode(config, tokenizer_keys=keys, prompts=prompts, res=common.pp_res(arg))
    return config
