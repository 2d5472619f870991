"""RefCOCO / RefCOCO+ / RefCOCOg, one example per referring expression (`refcoco/<config>`).

Why not only the stock TFDS `ref_coco`: it fits for building (same manual files, see below) but yields one example per
*image* with nested objects and expressions; PaliGemma's `detect`/`segment` transfers and the mIoU evaluation want one
example per expression, each evaluated once. This builder flattens that, keeps the ground-truth mask per expression
and reads the same manual files, so one manual_dir serves both:

  * the stock one: `tfds build ref_coco --data_dir DIR --manual_dir MANUAL_DIR` (configs refcoco_unc, refcoco_google,
    refcocoplus_unc, refcocog_umd, refcocog_google; needs manual_dir/refcoco.json + manual_dir/coco_train2014/);
  * this one: `python -m datasets.build refcoco/refcoco_unc --data_dir DIR --manual_dir MANUAL_DIR`.

See `refcoco_dataset_builder.MANUAL_DOWNLOAD_INSTRUCTIONS` for the manual_dir layout.
"""

from datasets.builders.refcoco.refcoco_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    missing_manual_files,
)

__all__ = ["Builder", "MANUAL_DOWNLOAD_INSTRUCTIONS", "missing_manual_files"]
