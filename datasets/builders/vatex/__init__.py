"""VATEX (English captions) as a TFDS dataset (`vatex`), one example per clip. See `vatex_dataset_builder.py`."""

from datasets.builders.vatex.vatex_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder, missing_manual_files

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "missing_manual_files"]
