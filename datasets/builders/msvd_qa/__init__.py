"""MSVD-QA as a TFDS dataset (`msvd_qa`), one example per question. See `msvd_qa_dataset_builder.py`."""

from datasets.builders.msvd_qa.msvd_qa_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "missing_manual_files"]
