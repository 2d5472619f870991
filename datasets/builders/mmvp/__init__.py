"""MMVP as a TFDS dataset (`mmvp`), built from the official files in a manual_dir.

See `mmvp_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
"""

from datasets.builders.mmvp.mmvp_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder, missing_manual_files  # noqa: F401
