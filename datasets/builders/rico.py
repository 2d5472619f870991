"""What the `screen2words` and `widget_caption` builders share: RICO screenshots and the official split / CSV files.

Both datasets annotate RICO screens (https://interactionmining.org/rico): a CSV file of annotations keyed by
`screenId`, split files of screen ids (`split/<name>.txt`, or directly in manual_dir) and the screenshots of RICO's
"UI screenshots and view hierarchies" archive (`combined/<screenId>.jpg`, next to `<screenId>.json`).

  find_split(manual_dir, name)          the path of a split file (manual_dir/split/ or manual_dir), or None
  missing(manual_dir, csv_file, splits) the body of a builder's `missing_manual_files`: the CSV file, combined/ and
                                        at least one split file
  read_screen_ids(path, dataset)        the screen ids of a split file
  read_csv(path, dataset, columns)      the rows of the CSV file
  screen_id(row, path, dataset)         a row's `screenId` as an int (ValueError naming the file otherwise)
  screen_file(manual_dir, id, ext)      `manual_dir/combined/<id><ext>`: the screenshot (".jpg"), hierarchy (".json")
"""

from __future__ import annotations

import csv
import os

from datasets.builders import common

IMAGES = "combined"  # unique_uis.tar.gz unpacks to combined/<screenId>.jpg and .json


def find_split(manual_dir: str, name: str) -> str | None:
    """Path of a split file in manual_dir/split or manual_dir, or None."""
    return common.find_in((os.path.join(manual_dir, "split"), manual_dir), name)


def missing(manual_dir: str, csv_file: str, splits: dict[str, str]) -> list[str]:
    """The required files/folders that are not in manual_dir: `csv_file`, combined/ and one of the split files."""
    absent = common.missing_files(manual_dir, [csv_file, f"{IMAGES}/"])
    if not any(find_split(manual_dir, name) for name in splits.values()):
        absent.append(" or ".join(f"split/{name}" for name in splits.values()))
    return absent


def read_screen_ids(path: str, dataset: str) -> list[int]:
    """The screen ids of an official split file (one integer a line; blank lines skipped)."""
    ids = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    ids.append(int(line.strip()))
                except ValueError:
                    raise ValueError(
                        f"{dataset}: {path} line {number} is not a screen id ({line.strip()[:50]!r}); "
                        "is it an official split file (one RICO screen id a line)?"
                    ) from None
    return ids


def read_csv(path: str, dataset: str, columns: tuple[str, ...]) -> list[dict]:
    """The rows of an official CSV file; ValueError naming the file when it lacks one of `columns`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset}: {path} not found")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            absent = [c for c in columns if c not in (reader.fieldnames or [])]
            if absent:
                raise ValueError(
                    f"{dataset}: {path} is not the official CSV file (no {', '.join(absent)} column; "
                    f"columns: {reader.fieldnames})"
                )
            return list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{dataset}: {path} is not a readable CSV file ({e})") from None


def screen_id(row: dict, path: str, dataset: str) -> int:
    """The row's `screenId`; ValueError naming the file when it is not a number."""
    try:
        return int(row["screenId"])
    except (TypeError, ValueError):
        raise ValueError(f"{dataset}: {path}: screenId {row['screenId']!r} is not a number") from None


def screen_file(manual_dir: str, screen: int, ext: str) -> str:
    """`manual_dir/combined/<screen><ext>`: the screenshot (".jpg") or the view hierarchy (".json") of a screen."""
    return os.path.join(manual_dir, IMAGES, f"{screen}{ext}")
