"""RSVQA-LR (non-numeric questions) as a TFDS dataset (`rsvqa_lr`), built from the official files in a manual_dir.

See `rsvqa_lr_dataset_builder.py` for the splits, `datasets.builders.rsvqa` for the features and format.
"""

from datasets.builders.rsvqa_lr.rsvqa_lr_dataset_builder import (  # noqa: F401
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)
