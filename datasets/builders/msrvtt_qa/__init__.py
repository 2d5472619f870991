"""MSRVTT-QA as a TFDS dataset (`msrvtt_qa`), built from the official files in a manual_dir.

See `msrvtt_qa_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
"""

from datasets.builders.msrvtt_qa.msrvtt_qa_dataset_builder import (  # noqa: F401
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)
