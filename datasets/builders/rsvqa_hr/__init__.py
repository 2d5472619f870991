"""RSVQA-HR (non-numeric questions) as a TFDS dataset (`rsvqa_hr`), built from the official files in a manual_dir.

See `rsvqa_hr_dataset_builder.py` for the splits, `datasets.builders.rsvqa` for the features and format.
"""

from datasets.builders.rsvqa_hr.rsvqa_hr_dataset_builder import (  # noqa: F401
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)
