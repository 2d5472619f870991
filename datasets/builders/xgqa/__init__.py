"""xGQA as a TFDS dataset (`xgqa`), built from the official files in a manual_dir. See `xgqa_dataset_builder.py`."""

from datasets.builders.xgqa.xgqa_dataset_builder import (
    LANGUAGES,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)

__all__ = ["LANGUAGES", "MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "missing_manual_files"]
