"""NLVR2 as a TFDS dataset (`nlvr2`), built from the official files in a manual_dir.

See `nlvr2_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
"""

from datasets.builders.nlvr2.nlvr2_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder, missing_manual_files  # noqa: F401
