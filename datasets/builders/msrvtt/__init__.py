"""MSR-VTT video captioning as a TFDS dataset (`msrvtt`), built from the official files in a manual_dir.

See `msrvtt_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
`datasets.builders.msrvtt_qa` (MSRVTT-QA) reads the same clips.
"""

from datasets.builders.msrvtt.msrvtt_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder, missing_manual_files  # noqa: F401
