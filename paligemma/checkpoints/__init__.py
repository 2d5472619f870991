"""Reading and writing PaliGemma checkpoints: big_vision `.npz`, PyTorch-hub (safetensors) folders, this project's own.

    config, params = load(path)                      # any of the three formats, detected from `path`
    config, params = load("runs/easyvqa")            # a training run's latest readable step (step=N: that one)
    model = Model(**config); model.apply({"params": params}, image, text, mask_ar)
    save(folder, config, params)                     # this project's format: folder with config.json + params.npz
    save_npz(path, params)                           # the original flat layout (big_vision reads it)
    save_hf(folder, params, config)                  # loads with PaliGemmaForConditionalGeneration.from_pretrained

Modules: `loading` (load), `formats` (detect_format), `npz`, `hf` (+ `safetensors`), `own` (one per format),
`infer` (the model config: inferred from shapes, checked against the arrays), `common` (errors, dtypes), and
`training`: a training workdir's orbax checkpoints and `load_any`, which also reads those (imported on its own: it
needs orbax; `load` imports it only when given a training workdir or step folder).

Memory: arrays are read one at a time and cast while being read, so loading needs about the size of the result plus
one per-layer matrix. Every name and shape is checked against `paligemma.model.param_shapes(config)` before any data
is read; a mismatch raises one `CheckpointError` (a `ValueError`) naming the file and listing every offending name.
"""

from paligemma.checkpoints.common import DTYPES, CheckpointError
from paligemma.checkpoints.formats import detect_format
from paligemma.checkpoints.hf import (
    HF_INDEX_FILE,
    HF_WEIGHTS_FILE,
    canonical_hf_name,
    config_from_hf,
    hf_config,
    save_hf,
    to_hf,
)
from paligemma.checkpoints.infer import infer_config
from paligemma.checkpoints.loading import load
from paligemma.checkpoints.npz import save_npz
from paligemma.checkpoints.own import OWN_CONFIG_FILE, OWN_FORMAT, OWN_FORMAT_VERSION, OWN_PARAMS_FILE, save
from paligemma.checkpoints.safetensors import write_safetensors

__all__ = [
    "DTYPES",
    "HF_INDEX_FILE",
    "HF_WEIGHTS_FILE",
    "OWN_CONFIG_FILE",
    "OWN_FORMAT",
    "OWN_FORMAT_VERSION",
    "OWN_PARAMS_FILE",
    "CheckpointError",
    "canonical_hf_name",
    "config_from_hf",
    "detect_format",
    "hf_config",
    "infer_config",
    "load",
    "save",
    "save_hf",
    "save_npz",
    "to_hf",
    "write_safetensors",
]
