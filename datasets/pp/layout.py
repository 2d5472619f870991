r"""PaliGemma text layout and masks, in plain numpy (used by the `tok_paligemma*` ops; testable without TF).

Training layout (docs/reference.md §2.1), `text_len` tokens::

    tokens    : <bos> prefix... "\n"  suffix... <eos>  <pad>...
    mask_ar   :   0     0...      0     1...      1      1...     # 0 = bidirectional prefix, 1 = causal
    mask_loss :   0     0...      0     1...      1      0...
    mask_input:   1     1...      1     1...      1      0...     # 1 = real token, 0 = padding

Truncation (when `2 + len(prefix) + len(suffix) + 1 > text_len`): `<bos>` and the `"\n"` separator are
always kept. The remaining budget `A = text_len - 2` is shared between the prefix tokens and the suffix part
(suffix tokens + `<eos>`) according to `truncate`:

* `"longest_first"` (default): the shorter of the two parts is kept whole when it fits in half the budget, the
  longer one gets the rest (both long: about half each; the suffix gets the odd token). A short task prompt
  (`caption en`) is never cut by a long caption, and a short answer is never cut by a long question.
* `"prefix"`: the suffix part is kept whole (up to `A`), the prefix is cut.
* `"suffix"`: the prefix is kept (up to `A - 1`), the suffix part is cut.

A cut prefix keeps its first tokens. A cut suffix keeps its first tokens and, with `keep_eos=True` (default),
its last kept slot is `<eos>` (the model still learns to stop); with `keep_eos=False` the sequence ends without
`<eos>` (as big_vision does). Either way truncation is never silent: the `truncated` flag is a bit mask,
`1` = prefix cut, `2` = suffix cut (so `3` = both), `0` = nothing cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["TRUNC_PREFIX", "TRUNC_SUFFIX", "TRUNCATE_POLICIES", "train_layout", "prompt_layout", "split_budget"]

TRUNC_PREFIX = 1
TRUNC_SUFFIX = 2
TRUNCATE_POLICIES = ("longest_first", "prefix", "suffix")


def split_budget(n_prefix: int, n_suffix_part: int, budget: int, truncate: str) -> tuple[int, int]:
    """How many prefix tokens and suffix-part tokens (suffix + eos) to keep within `budget` slots."""
    lp, lt, a = n_prefix, n_suffix_part, budget
    if lp + lt <= a:
        return lp, lt
    if truncate == "prefix":
        t = min(lt, a)
        return min(lp, a - t), t
    if truncate == "suffix":
        p = min(lp, max(a - 1, 0))
        return p, min(lt, a - p)
    if truncate == "longest_first":
        if lt <= lp:
            t = min(lt, (a + 1) // 2)
            return a - t, t
        p = min(lp, a // 2)
        return p, a - p
    raise ValueError(f"truncate must be one of {TRUNCATE_POLICIES}, got {truncate!r}")


def train_layout(
    prefix_ids: Sequence[int],
    suffix_ids: Sequence[int],
    text_len: int,
    *,
    bos_id: int,
    eos_id: int,
    sep_id: int,
    pad_id: int,
    truncate: str = "longest_first",
    keep_eos: bool = True,
) -> dict[str, np.ndarray]:
    """Builds `text`, `mask_ar`, `mask_loss`, `mask_input` (int32 `[text_len]`) and `truncated` (int32).

    `prefix_ids` / `suffix_ids` are the token ids of the prefix and suffix text, without bos/eos/separator.
    """
    if text_len < 3:
        raise ValueError(f"text_len must be >= 3 (bos, separator, eos), got {text_len}")
    prefix = [int(i) for i in prefix_ids]
    suffix = [int(i) for i in suffix_ids] + [eos_id]
    p, t = split_budget(len(prefix), len(suffix), text_len - 2, truncate)
    flag = 0
    if p < len(prefix):
        flag |= TRUNC_PREFIX
    if t < len(suffix):
        flag |= TRUNC_SUFFIX
        suffix = suffix[: t - 1] + [eos_id] if keep_eos else suffix[:t]
    head = [bos_id] + prefix[:p] + [sep_id]
    n_pad = text_len - len(head) - len(suffix)
    text = np.array(head + suffix + [pad_id] * n_pad, np.int32)
    mask_ar = np.array([0] * len(head) + [1] * (len(suffix) + n_pad), np.int32)
    mask_loss = np.array([0] * len(head) + [1] * len(suffix) + [0] * n_pad, np.int32)
    mask_input = np.array([1] * (len(head) + len(suffix)) + [0] * n_pad, np.int32)
    return {
        "text": text,
        "mask_ar": mask_ar,
        "mask_loss": mask_loss,
        "mask_input": mask_input,
        "truncated": np.int32(flag),
    }


def prompt_layout(
    prefix_ids: Sequence[int], text_len: int, *, bos_id: int, sep_id: int, pad_id: int
) -> dict[str, np.ndarray]:
    r"""Eval/decoding input: `<bos> prefix "\n" <pad>...`; mask_ar and mask_loss all 0, mask_input 1 on the prompt.

    A prefix longer than `text_len - 2` keeps its first tokens (bos and separator always kept) and sets
    `truncated = 1`.
    """
    if text_len < 2:
        raise ValueError(f"text_len must be >= 2 (bos, separator), got {text_len}")
    prefix = [int(i) for i in prefix_ids]
    keep = min(len(prefix), text_len - 2)
    head = [bos_id] + prefix[:keep] + [sep_id]
    n_pad = text_len - len(head)
    zeros = np.zeros([text_len], np.int32)
    return {
        "text": np.array(head + [pad_id] * n_pad, np.int32),
        "mask_ar": zeros,
        "mask_loss": zeros.copy(),
        "mask_input": np.array([1] * len(head) + [0] * n_pad, np.int32),
        "truncated": np.int32(TRUNC_PREFIX if keep < len(prefix) else 0),
    }
