"""AI2D as a TFDS dataset (`ai2d`), built from the official files in a manual_dir.

See `ai2d_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
"""

from datasets.builders.ai2d.ai2d_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder, missing_manual_files  # noqa: F401
