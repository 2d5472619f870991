"""ActivityNet-QA as a TFDS dataset (`activitynet_qa`), one example per question.

See `activitynet_qa_dataset_builder.py` for the features and the manual_dir layout.
"""

from datasets.builders.activitynet_qa.activitynet_qa_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "missing_manual_files"]
