"""ScienceQA (image questions) as a TFDS dataset (`scienceqa`), built from the official files in a manual_dir.

See `scienceqa_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
"""

from datasets.builders.scienceqa.scienceqa_dataset_builder import (  # noqa: F401
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)
