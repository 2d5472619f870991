"""ChartQA as a TFDS dataset (`chartqa`), built from the official files in a manual_dir.

See `chartqa_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
"""

from datasets.builders.chartqa.chartqa_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "missing_manual_files"]
