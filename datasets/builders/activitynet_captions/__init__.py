"""ActivityNet Captions as a TFDS dataset (`activitynet_captions`), one example per annotated segment.

See `activitynet_captions_dataset_builder.py` for the features and `MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir
layout.
"""

from datasets.builders.activitynet_captions.activitynet_captions_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "missing_manual_files"]
