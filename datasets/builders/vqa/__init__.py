"""VQAv2 as a TFDS dataset (`vqa`), built from the official files in a manual_dir. See `vqa_dataset_builder.py`."""

from datasets.builders.vqa.vqa_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder, missing_manual_files  # noqa: F401
