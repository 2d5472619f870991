r"""Builds one of this project's TFDS datasets (`datasets/builders/`) into a data_dir.

    python -m datasets.build easy_vqa --data_dir ~/tensorflow_datasets
    python -m datasets.build vqa --data_dir DIR --manual_dir ~/manual/vqav2
    python -m datasets.build refcoco/refcoco_unc --data_dir DIR --manual_dir ~/manual/refcoco
    python -m datasets.build vqa --help_manual        # which files to download, and where to put them
    python -m datasets.build --list

Nothing is downloaded: datasets that need files from elsewhere read them from `--manual_dir`; when they are missing
the command says what to download and where to put it (exit status 2). A dataset that is already prepared in
data_dir is reused unless `--overwrite`. Stock TFDS datasets are built with TFDS's own `tfds build`.
"""

from __future__ import annotations

import os
import shutil
import sys

import tensorflow_datasets as tfds
from absl import app, flags

from datasets import builders
from paligemma import cli
from paligemma.errors import UserError

FLAGS = flags.FLAGS


def _define_flags():  # only when run as a program, so that importing `prepare` defines no flags
    flags.DEFINE_string("data_dir", None, "TFDS data_dir to write the prepared dataset to (default: TFDS's default).")
    flags.DEFINE_string("manual_dir", None, "Folder with the manually downloaded files (datasets that need them).")
    flags.DEFINE_bool("overwrite", False, "Rebuild even when the dataset is already prepared in data_dir.")
    flags.DEFINE_bool("help_manual", False, "Print which files the dataset needs in --manual_dir, and exit.")
    flags.DEFINE_bool("list", False, "List the datasets this command builds, and exit.")


class ManualFilesMissing(UserError, FileNotFoundError):
    """The files a builder needs in its manual_dir are not there (the message says what to do)."""


def _base(name: str) -> str:
    return name.split("/")[0].split(":")[0]


def _config_name(name: str) -> str | None:
    parts = name.split(":")[0].split("/")
    return parts[1] if len(parts) > 1 else None


def manual_instructions(name: str) -> str | None:
    """What to download into manual_dir for `name` (None: it needs no manual files)."""
    return getattr(builders.get_builder_class(_base(name)), "MANUAL_DOWNLOAD_INSTRUCTIONS", None)


def check_manual_dir(name: str, manual_dir: str | None) -> None:
    """Raises ManualFilesMissing (with instructions) when `name` needs manual files that manual_dir lacks."""
    instructions = manual_instructions(name)
    if not instructions:
        return
    if not manual_dir:
        raise ManualFilesMissing(
            f"{name} is built from manually downloaded files: pass --manual_dir.", details=instructions
        )
    if not os.path.isdir(manual_dir):
        raise ManualFilesMissing(f"--manual_dir {manual_dir} does not exist.", details=instructions)
    module = sys.modules[builders.get_builder_class(_base(name)).__module__]
    check = getattr(module, "missing_manual_files", None)
    if check is None:
        return
    kwargs = {}
    builder_cls = builders.get_builder_class(_base(name))
    config = _config_name(name)
    if config and getattr(builder_cls, "BUILDER_CONFIGS", None):
        for bc in builder_cls.BUILDER_CONFIGS:
            if bc.name == config and hasattr(bc, "dataset"):
                kwargs = dict(dataset=bc.dataset, partition=bc.partition)
    missing = check(manual_dir, **kwargs)
    if missing:
        raise ManualFilesMissing(
            f"{name}: not found in --manual_dir {manual_dir}: {', '.join(missing)}", details=instructions
        )


def prepare(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    overwrite: bool = False,
    num_shards: int | None = None,
):
    """Builds dataset `name` (one of `builders.BUILDERS`, optionally `name/config`) into data_dir; returns the builder.

    `num_shards`: files per split (default: TFDS's choice by size).
    """
    builders.register_all()
    if _base(name) not in builders.BUILDERS:
        raise KeyError(
            f"Unknown dataset {name!r}; this command builds: {', '.join(sorted(builders.BUILDERS))} "
            "(stock TFDS datasets: use `tfds build`)."
        )
    check_manual_dir(name, manual_dir)
    builder = tfds.builder(name, data_dir=data_dir)
    config = tfds.download.DownloadConfig(
        manual_dir=manual_dir,
        try_download_gcs=False,
        num_shards=num_shards,
        compute_stats=tfds.download.ComputeStatsMode.SKIP,
    )
    if overwrite and builder.is_prepared():
        shutil.rmtree(os.fspath(builder.data_path))
        builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare(download_config=config)
    return builder


def main(argv):
    """`python -m datasets.build NAME...`: builds the named datasets (see the module docstring).

    Returns the exit status: 0, or 2 after an expected failure (missing manual files, unknown dataset, a path that
    cannot be written), printed as one `error:` line (`paligemma.cli.run_main`).
    """
    return cli.run_main(_main, argv)


def _main(argv):
    names = argv[1:]
    if FLAGS.list:
        for n in sorted(builders.BUILDERS):
            cls = builders.get_builder_class(n)
            configs = [bc.name for bc in (getattr(cls, "BUILDER_CONFIGS", None) or [])]
            manual = "needs --manual_dir" if getattr(cls, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) else "offline"
            print(f"{n:10s} {manual:18s} {'configs: ' + ', '.join(configs) if configs else ''}")
        return 0
    if len(names) != 1:
        raise app.UsageError(
            "usage: python -m datasets.build NAME --data_dir DIR [--manual_dir DIR] "
            f"(NAME one of {', '.join(sorted(builders.BUILDERS))}; --list for configs)"
        )
    name = names[0]
    if _base(name) not in builders.BUILDERS:
        print(
            f"error: unknown dataset {name!r}; this command builds {', '.join(sorted(builders.BUILDERS))}. Stock TFDS "
            "datasets are prepared with `tfds build NAME --data_dir DIR [--manual_dir DIR]`.",
            file=sys.stderr,
        )
        return 2
    if FLAGS.help_manual:
        print(manual_instructions(name) or f"{name} needs no manually downloaded files.")
        return 0
    builder = prepare(name, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, overwrite=FLAGS.overwrite)
    splits = ", ".join(f"{k}: {v.num_examples}" for k, v in sorted(builder.info.splits.items()))
    print(f"Prepared {builder.info.full_name} in {builder.data_dir} ({splits})")
    return 0


if __name__ == "__main__":
    _define_flags()
    app.run(main)
