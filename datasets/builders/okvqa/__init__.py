"""OK-VQA as a TFDS dataset (`okvqa`), built from the official files in a manual_dir. See `okvqa_dataset_builder.py`."""

from datasets.builders.okvqa.okvqa_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder, missing_manual_files  # noqa: F401
