"""Test-server submission files of the evaluator types, and the A-OKVQA merge.

Every generative evaluator with `submission_file` writes `{workdir}/evals/{name}_submission_step{step}.json` (also
for a test split without ground truth, which is predicted, not scored). Two config keys choose its layout:

  submission_format="list"    `[{<id name>: id, <answer name>: prediction}, ...]` (the default)
  submission_format="aokvqa"  `{id: {<field>: prediction}, ...}` (the A-OKVQA leaderboard; field "multiple_choice"
                              for the `multiple_choice` type, "direct_answer" for the others)
  submission_id_name=None     the key of the id in "list" entries; None = the type's default

Servers and their settings (the id is the field `id_key` names):

  VQAv2, TextVQA, ST-VQA, OK-VQA  vqa / anls  list, id name "question_id" (vqa's default; anls: set it)
  VizWiz VQA                      vqa         list, submission_id_name="image" (id_key: the image file name field)
  DocVQA, InfographicVQA          anls        list, id name "questionId" (anls's default)
  COCO, NoCaps, TextCaps          caption     list of `{"image_id", "caption"}` (caption's defaults)
  A-OKVQA MC / DA                 multiple_choice / vqa with submission_format="aokvqa"

A-OKVQA's leaderboard takes ONE file holding both answers of each question; the MC and DA evaluators write one
each, and `python -m evaluators.submission merge_aokvqa MC.json DA.json OUT.json` joins them (`merge_aokvqa`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from evaluators.registry import EvalConfigError

__all__ = ["SUBMISSION_KEYS", "SUBMISSION_FORMATS", "check_submission_config", "submission", "merge_aokvqa"]

SUBMISSION_KEYS: dict[str, Any] = dict(submission_format="list", submission_id_name=None)
SUBMISSION_FORMATS = ("list", "aokvqa")


def check_submission_config(cfg: dict, where: str) -> None:
    """Raises `EvalConfigError` for a bad `submission_format` / `submission_id_name`."""
    if cfg["submission_format"] not in SUBMISSION_FORMATS:
        raise EvalConfigError(
            f"{where}: submission_format must be one of {list(SUBMISSION_FORMATS)}, got {cfg['submission_format']!r}"
        )
    name = cfg["submission_id_name"]
    if name is not None and (not isinstance(name, str) or not name):
        raise EvalConfigError(f"{where}: submission_id_name must be a non-empty string or None, got {name!r}")


def submission(
    records: list[dict], config: dict, *, default_id: str, answer_name: str = "answer", aokvqa_field: str
) -> Any:
    """The submission JSON content of `records` (each with "id" and "prediction"), or None without ids."""
    if not records or any("id" not in r for r in records):
        return None
    if config.get("submission_format", "list") == "aokvqa":
        return {str(r["id"]): {aokvqa_field: r["prediction"]} for r in records}
    id_name = config.get("submission_id_name") or default_id
    return [{id_name: r["id"], answer_name: r["prediction"]} for r in records]


def merge_aokvqa(*parts: dict) -> dict:
    """Joins A-OKVQA submissions `{question_id: {field: answer}}` (MC and DA) into one `{question_id: {...}}`.

    Raises ValueError when the parts cover different questions or give the same field twice.
    """
    if not parts:
        raise ValueError("merge_aokvqa needs at least one submission")
    ids = set(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if set(part) != ids:
            missing, extra = sorted(ids - set(part))[:3], sorted(set(part) - ids)[:3]
            raise ValueError(
                f"submission {i} does not cover the same questions as submission 1 "
                f"(missing e.g. {missing}, extra e.g. {extra})"
            )
    out: dict[str, dict] = {q: {} for q in parts[0]}
    for part in parts:
        for q, answers in part.items():
            if not isinstance(answers, dict):
                raise ValueError(f"question {q!r}: expected an object of answers, got {answers!r}")
            for field, value in answers.items():
                if field in out[q]:
                    raise ValueError(f"question {q!r}: {field!r} is given by two submissions")
                out[q][field] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluators.submission", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge_aokvqa", help="join the A-OKVQA MC and DA submission files into one")
    merge.add_argument("inputs", nargs="+", help="submission files (the MC and the DA evaluator's)")
    merge.add_argument("output", help="the merged file to write")
    args = parser.parse_args(argv)
    parts = []
    for path in args.inputs:
        try:
            with open(path, encoding="utf-8") as f:
                parts.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            print(f"error: cannot read submission {path}: {e}", file=sys.stderr)
            return 2
        if not isinstance(parts[-1], dict):
            print(f"error: {path} is not an A-OKVQA submission (a JSON object keyed by question id)", file=sys.stderr)
            return 2
    try:
        merged = merge_aokvqa(*parts)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(merged, f, ensure_ascii=False)
    print(f"wrote {len(merged)} questions to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
