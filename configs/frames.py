"""Helpers shared by the transfers whose input is several frames: video clips and image pairs.

Such a config (`configs/transfer/msrvtt_cap.py`, `nlvr2.py`, ...) names what is its own: the dataset, an `Input`
(where the frames come from, the prompt, the target texts, text_len), the recipe numbers and the evaluator; these
build the rest the same way for all of them:

  Input(media, prompt, target, text_len)    .train_pp / .eval_pp: the pp strings (frames at res, or 32 px in mock
                                            mode: `pp_res`), the frame_mask kept
  training(arg, input, dataset, ...)        the run without evaluators: released model, input, recipe
  caption_eval(pp, ...) / qa_eval(pp, ...)  an evaluator entry: greedy captions scored by CIDEr x100 / greedy answers
                                            scored by exact match
  add_evals(config, arg, evaluator, dataset, {name: split})
                                            the evaluator on each split (the first during the run)
  finish(config, arg, input, num_frames)    the planned slice (`common.fit_released_slice` with the frames), or the
                                            mock run (`common.mock_mode`)
"""

from __future__ import annotations

import dataclasses
import string

import ml_collections

from configs import common

MOCK_RES = 32  # the tiny mock model's image size
TRAIN_KEYS = ("image", "frame_mask", "text", "mask_ar", "mask_loss", "mask_input")
EVAL_KEYS = ("image", "frame_mask", "text", "mask_ar", "mask_input")


def pp_res(arg: ml_collections.ConfigDict) -> int:
    """The frames' resolution in the pp strings: `arg.res`, or `MOCK_RES` for the tiny mock model."""
    return MOCK_RES if arg.mode == "mock" else arg.res


def _keep(keys) -> str:
    return "keep(" + ", ".join(f'"{k}"' for k in keys) + ")"


@dataclasses.dataclass(frozen=True)
class Input:
    """How an example becomes the model's input and target.

    `media`: "video" (the `video` feature's clip, `frames_from_video`) or "images" (the `images` feature,
    `frames_from_images`); `prompt`: the prefix, with the example's text fields in braces ("answer en {question}");
    `target`: the field of the reference texts ("captions", "answers"; training draws one per visit).
    """

    media: str
    prompt: str
    target: str
    text_len: int

    def _frames(self, arg: ml_collections.ConfigDict, num_frames: int) -> str:
        op = {"video": "frames_from_video", "images": "frames_from_images"}[self.media]
        return (
            f'{op}(inkey="{self.media}", outkey="image", num_frames={num_frames}, size={pp_res(arg)})'
            f'|value_range(-1, 1)|strfmt("{self.prompt}", outkey="prefix")'
        )

    def train_pp(self, arg: ml_collections.ConfigDict, num_frames: int) -> str:
        """Frames, prompt, one target drawn at random, tokens."""
        return (
            f'{self._frames(arg, num_frames)}|choice(inkey="{self.target}", outkey="suffix")'
            f"|tok_paligemma(text_len={self.text_len})|{_keep(TRAIN_KEYS)}"
        )

    def eval_pp(self, arg: ml_collections.ConfigDict, num_frames: int, extra_keys: tuple[str, ...] = ()) -> str:
        """Frames and prompt tokens; keeps the references, the id and `extra_keys` for the evaluator."""
        keys = (*EVAL_KEYS, self.target, "id", *extra_keys)
        return f"{self._frames(arg, num_frames)}|tok_paligemma_prompt(text_len={self.text_len})|{_keep(keys)}"

    def mock_texts(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(the text fields, the prompt's fixed words): what the mock run's tokenizer is trained on."""
        fields = tuple(name for _, name, _, _ in string.Formatter().parse(self.prompt) if name)
        return (*fields, self.target), (self.prompt.split("{")[0].strip(),)


def training(
    arg: ml_collections.ConfigDict,
    inp: Input,
    dataset: str,
    num_frames: int,
    *,
    batch_size: int,
    epochs: int,
    lr: float = 1e-5,
    wd: float = 0.0,
    shuffle_buffer_size: int = 10_000,
    freeze_image_encoder: bool = False,
) -> ml_collections.ConfigDict:
    """The run on `dataset` (train, or train+validation with `arg.final_split`) with no evaluators yet.

    The released model `arg.model` at `arg.res`, the original transfer recipe (`common.original_transfer_recipe`)
    with `lr` and weight decay `wd`; `freeze_image_encoder`: no gradient and no optimizer state for the ViT.
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    common.released_model(config, arg.model, arg.res)
    config.input = dict(
        data=dict(name=dataset, split="train+validation" if arg.final_split else "train"),
        batch_size=batch_size,
        shuffle_buffer_size=shuffle_buffer_size,
        pp=inp.train_pp(arg, num_frames),
    )
    config.total_epochs = epochs
    common.original_transfer_recipe(config)
    config.lr = lr
    config.wd = wd
    if freeze_image_encoder:
        config.freeze = (r"^img/",)
    config.evals = {}
    return config


def caption_eval(pp: str, *, batch_size: int, max_decode_len: int) -> dict:
    """A `caption` evaluator entry: greedy captions, CIDEr-D (BLEU-4, ROUGE-L) x100 against all `captions`."""
    return dict(
        type="caption",
        batch_size=batch_size,
        pp=pp,
        references_key="captions",
        id_key="id",
        score_scale=100.0,
        max_decode_len=max_decode_len,
        sampler="greedy",
    )


def qa_eval(pp: str, *, batch_size: int, normalize: str, max_decode_len: int, **kwargs) -> dict:
    """A `vqa` evaluator entry: greedy answers, exact match after `normalize`; `kwargs` go to the evaluator."""
    return dict(
        type="vqa",
        batch_size=batch_size,
        pp=pp,
        id_key="id",
        normalize=normalize,
        max_decode_len=max_decode_len,
        sampler="greedy",
        **kwargs,
    )


def add_evals(
    config: ml_collections.ConfigDict,
    arg: ml_collections.ConfigDict,
    evaluator: dict,
    dataset: str,
    splits: dict[str, str],
    *,
    log_percent: float = 0.25,
) -> None:
    """`config.evals[name]` = `evaluator` on `dataset`'s split, for each `name: split` in order.

    The first runs every `log_percent` of the run and at the end, the others at the end. With `arg.final_split` the
    validation splits (trained on) are left out.
    """
    for index, (name, split) in enumerate(splits.items()):
        if arg.final_split and split.startswith("validation"):
            continue
        config.evals[name] = dict(evaluator, data=dict(name=dataset, split=split))
        if index == 0:
            config.evals[name].log_percent = log_percent


def finish(
    config: ml_collections.ConfigDict, arg: ml_collections.ConfigDict, inp: Input, num_frames: int
) -> ml_collections.ConfigDict:
    """Fits the run to the slice planned for `num_frames` frames, or turns it into a mock run (after the evals)."""
    common.fit_released_slice(config, arg.model, arg.res, frames=num_frames)
    if arg.mode == "mock":
        keys, prompts = inp.mock_texts()
        common.mock_mode(config, tokenizer_keys=keys, prompts=prompts, res=pp_res(arg))
    return config
