"""easy-VQA as a TFDS dataset (`easy_vqa`), built offline from the files the `easy-vqa` pip package ships.

Build: `python -m datasets.build easy_vqa --data_dir DIR` (about half a minute on 2 CPU cores; nothing is downloaded).
See `easy_vqa_dataset_builder.py` for the features.
"""

from datasets.builders.easy_vqa.easy_vqa_dataset_builder import Builder, find_data_dir  # noqa: F401
