"""GQA as a TFDS dataset (`gqa`), built from the official files in a manual_dir. See `gqa_dataset_builder.py`."""

from datasets.builders.gqa.gqa_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder, missing_manual_files  # noqa: F401
