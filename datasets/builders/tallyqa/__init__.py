"""TallyQA as a TFDS dataset (`tallyqa`), built from the official files in a manual_dir.

See `tallyqa_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
"""

from datasets.builders.tallyqa.tallyqa_dataset_builder import (  # noqa: F401
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)
