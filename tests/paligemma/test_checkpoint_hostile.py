"""Hostile and damaged checkpoint files (issue 17): each is one CheckpointError naming the file, the field and the fix.

Each case reproduces a failure of the code before the fix (a raw TypeError/ValueError/AttributeError/MemoryError, or
a file outside the folder being opened) and checks the one-line error that replaced it.
"""

import io
import json
import os
import shutil
import struct
import zipfile

import jax
import numpy as np
import pytest
from numpy.lib import format as npy_format

from paligemma import checkpoints, vqvae
from paligemma import model as model_lib
from paligemma.checkpoints import hf as hf_lib
from paligemma.checkpoints.safetensors import SafetensorsFile

TINY1 = model_lib.get_config("paligemma-tiny")
TINY2 = model_lib.get_config("paligemma2-tiny")


def random_params(config, seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), model_lib.param_shapes(config))


@pytest.fixture(scope="module")
def params1():
    return random_params(TINY1, 1)


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------------------------
# config.json of this project's format.


def _edit(section=None, key=None, value=None, top=None):
    def mutate(meta):
        if top is not None:
            meta.update(top)
        elif key is None:
            meta["config"][section] = value
        else:
            meta["config"][section][key] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, match",
    [
        # Before: ValueError "dictionary update sequence element #0 has length 1".
        (_edit("llm", value="gemma_2b"), r"config\.llm must be an object of fields, got 'gemma_2b'"),
        # Before: TypeError "'<' not supported between instances of 'str' and 'int'".
        (_edit("llm", "depth", "two"), r"config\.llm\.depth: expected a positive integer, got 'two'; fix it"),
        # Before: TypeError "broadcast_in_dim shape must have every element be nonnegative".
        (_edit("llm", "depth", -1), r"config\.llm\.depth: expected a positive integer, got -1"),
        (_edit("img", "depth", 0), r"config\.img\.depth: expected a positive integer, got 0"),
        (_edit("img", "image_size", "224"), r"config\.img\.image_size: expected a positive integer \(or a pair"),
        (_edit("llm", "norm_eps", "small"), r"config\.llm\.norm_eps: expected a number"),
        # Before: TypeError "GemmaConfig.__init__() got an unexpected keyword argument 'dept'".
        (_edit("llm", "dept", 2), r"unknown key config\.llm\.dept \(did you mean 'depth'\?\)"),
        (_edit("lm", value={}), r"unknown key config\.lm \(did you mean 'llm'\?\)"),
        (_edit("llm", "variant", "gemma_99b"), r"invalid model config in config: Unknown Gemma variant 'gemma_99b'"),
        # Before: TypeError "'>' not supported between instances of 'str' and 'int'".
        (_edit(top={"version": "1"}), r"version must be a positive integer, got '1'"),
        (_edit(top={"config": "tiny"}), r"config must be an object with 'img' and 'llm' sections"),
    ],
)
def test_own_config_json_bad_values(tmp_path, params1, mutate, match):
    folder = tmp_path / "own"
    checkpoints.save(folder, TINY1, params1)
    meta = json.loads((folder / "config.json").read_text())
    mutate(meta)
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoints.CheckpointError, match=match) as err:
        checkpoints.load(folder)
    assert one_line(err).startswith(str(folder / "config.json") + ": ")


# ---------------------------------------------------------------------------------------------------------------
# config.json of a PyTorch-hub folder.


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, params1):
    folder = tmp_path_factory.mktemp("hf") / "ckpt"
    checkpoints.save_hf(folder, params1, TINY1)
    return folder


def _hf_copy(hf_folder, tmp_path):
    folder = tmp_path / "hf"
    shutil.copytree(hf_folder, folder)
    return folder, json.loads((folder / "config.json").read_text())


def _set(path, value):
    def mutate(meta):
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value

    return mutate


def _rename(section, old, new):
    def mutate(meta):
        meta[section][new] = meta[section].pop(old)

    return mutate


@pytest.mark.parametrize(
    "mutate, match",
    [
        # Before: AttributeError "'str' object has no attribute 'get'".
        (_set("text_config", "gemma"), r"text_config: expected an object of fields, got 'gemma'"),
        # Before: TypeError from jax ("broadcast_in_dim shape must have every element be nonnegative").
        (_set("text_config.num_hidden_layers", -2), r"text_config\.num_hidden_layers: expected a positive integer"),
        # Before: ValueError "cannot reshape array of size 0 into shape (64,64)".
        (_set("vision_config.num_hidden_layers", 0), r"vision_config\.num_hidden_layers: expected a positive int"),
        # Before: ValueError "invalid literal for int() with base 10: 'a'" (no field named).
        (_set("vision_config.hidden_size", "a"), r"vision_config\.hidden_size: expected a positive integer, got 'a'"),
        # Before: ValueError "image_size (2, 2, 4) is not a multiple of the patch size".
        (_set("vision_config.image_size", "224"), r"vision_config\.image_size: expected a positive integer"),
        (_set("text_config.rms_norm_eps", "1e-6"), r"text_config\.rms_norm_eps: expected a number"),
        (_set("text_config.rope_parameters", [1]), r"text_config\.rope_parameters: expected an object"),
        # Before: silently the default depth (18 Gemma layers) and a shape-mismatch list.
        (_rename("text_config", "num_hidden_layers", "num_hiden_layers"), r"text_config\.num_hiden_layers.*'num_hid"),
        (_rename("vision_config", "patch_size", "patchsize"), r"vision_config\.patchsize \(did you mean 'patch_size'"),
    ],
)
def test_hf_config_json_bad_values(hf_folder, tmp_path, mutate, match):
    folder, meta = _hf_copy(hf_folder, tmp_path)
    mutate(meta)
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoints.CheckpointError, match=match) as err:
        checkpoints.load(folder)
    msg = one_line(err)
    assert msg.startswith(str(folder / "config.json") + ": ") and "fix the file, or pass config=" in msg


def test_hf_config_unknown_keys_of_transformers_are_ignored(hf_folder, tmp_path):
    folder, meta = _hf_copy(hf_folder, tmp_path)
    meta["text_config"].update(torch_dtype="float32", use_cache=True, num_hidden_layer=9)  # real key present
    meta.update(transformers_version="4.99", _name_or_path="x")
    (folder / "config.json").write_text(json.dumps(meta))
    config, _ = checkpoints.load(folder)
    assert config["llm"]["depth"] == TINY1["llm"].get("depth", 2)


# ---------------------------------------------------------------------------------------------------------------
# .npz headers that declare more than the file holds.


def _npz_with_header(path, shape, data=b"\0" * 16, compression=zipfile.ZIP_STORED, name="llm/x.npy"):
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr(name, header.getvalue() + data)
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("shape", [(1 << 36,), (1 << 40, 1 << 40), (4, 5)])
def test_npz_header_declaring_a_huge_array(tmp_path, compression, shape):
    # Before: MemoryError ("Unable to allocate 256. GiB") or OverflowError while allocating, for a 200-byte file.
    path = _npz_with_header(tmp_path / "bomb.npz", shape, compression=compression)
    with pytest.raises(checkpoints.CheckpointError, match=r"bomb\.npz: .*'llm/x\.npy' declares shape .* but stores 16"):
        checkpoints.load(path, config=TINY1)
    from paligemma.checkpoints.npz import read_npz

    with pytest.raises(checkpoints.CheckpointError, match="declares shape"):
        read_npz(str(path))


def test_npz_member_claiming_more_than_the_archive(tmp_path):
    # A zip directory entry whose uncompressed size is a lie (a zip bomb's trick): refused before reading.
    path = _npz_with_header(tmp_path / "lie.npz", (4,))
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1 << 31)  # uncompressed size in the central directory
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match=r"lie\.npz: .*(impossible|corrupt|declares)"):
        checkpoints.load(path)


def test_vqvae_npz_is_checked_like_a_checkpoint(tmp_path):
    # Before: np.load allocated the declared array (MemoryError) and a garbage file gave a raw BadZipFile.
    bomb = _npz_with_header(tmp_path / "vae.npz", (1 << 36,), name="_vq_vae._embedding.npy")
    with pytest.raises(checkpoints.CheckpointError, match=r"vae\.npz: .*declares shape"):
        vqvae.load_params(bomb)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"<html>not found</html>")
    with pytest.raises(checkpoints.CheckpointError, match=r"garbage\.npz: not a readable \.npz"):
        vqvae.load_params(garbage)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"_vq_vae._embedding": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(checkpoints.CheckpointError, match="pickle"):
        vqvae.load_params(pickled)


# ---------------------------------------------------------------------------------------------------------------
# model.safetensors.index.json naming files outside the folder, or missing ones.


@pytest.fixture
def sharded(hf_folder, tmp_path, monkeypatch):
    """A folder with an index.json (to edit), a valid shard placed OUTSIDE it, and a record of every file opened."""
    folder = tmp_path / "hf"
    shutil.copytree(hf_folder, folder)
    shard = folder / "model-00001-of-00001.safetensors"
    os.rename(folder / "model.safetensors", shard)
    outside = tmp_path / "outside.safetensors"
    shutil.copyfile(shard, outside)
    names = list(SafetensorsFile(str(shard)).tensors)
    opened = []
    real = hf_lib.SafetensorsFile

    def recording(path):
        opened.append(os.path.abspath(path))
        return real(path)

    monkeypatch.setattr(hf_lib, "SafetensorsFile", recording)

    def write_index(file_for):
        index = {"metadata": {}, "weight_map": {n: file_for(i) for i, n in enumerate(names)}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))

    return folder, shard.name, outside, write_index, opened


@pytest.mark.parametrize(
    "name", ["../outside.safetensors", "{outside}", "sub/../../outside.safetensors", "link.safetensors"]
)
def test_index_naming_a_file_outside_the_folder_is_never_opened(sharded, name):
    # Before: the file outside the folder was opened (and, being a valid shard, loaded).
    folder, shard, outside, write_index, opened = sharded
    os.symlink(outside, folder / "link.safetensors")
    bad = name.format(outside=outside)
    write_index(lambda i: bad if i == 3 else shard)
    with pytest.raises(checkpoints.CheckpointError, match="outside the checkpoint folder, which are never opened") as e:
        checkpoints.load(folder)
    assert repr(bad) in one_line(e) and "index.json" in str(e.value)
    assert opened == []  # rejected before any shard was opened


def test_index_listing_missing_shards_names_them_all(sharded):
    folder, shard, _, write_index, opened = sharded
    write_index(lambda i: shard if i % 3 == 0 else f"model-0000{i % 3 + 1}-of-00003.safetensors")
    with pytest.raises(checkpoints.CheckpointError, match=r"2 of 3 shard files it lists do not exist") as e:
        checkpoints.load(folder)
    msg = one_line(e)
    assert "model-00002-of-00003.safetensors" in msg and "model-00003-of-00003.safetensors" in msg
    assert opened == []
    write_index(lambda i: None if i == 0 else shard)
    with pytest.raises(checkpoints.CheckpointError, match="not file names: None"):
        checkpoints.load(folder)


# ---------------------------------------------------------------------------------------------------------------
# safetensors headers.


def _safetensors(path, header, data=b""):
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return str(path)


@pytest.mark.parametrize(
    "header, data, match",
    [
        # Before: np.empty raised a raw ValueError ("negative dimensions are not allowed") on reading.
        ({"w": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}}, b"\0" * 16, "negative dimension"),
        ({"w": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 1 << 42]}}, b"\0" * 16, "do not fit"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}}, b"\0" * 16, "do not fit"),
        ({"w": "F32"}, b"", "expected an object"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "truncated"),
    ],
)
def test_safetensors_header_out_of_range(tmp_path, header, data, match):
    path = _safetensors(tmp_path / "model.safetensors", header, data)
    with pytest.raises(checkpoints.CheckpointError, match=match) as e:
        SafetensorsFile(path).array("w")
    assert one_line(e).startswith(path)


def test_safetensors_header_length_out_of_range(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    with pytest.raises(checkpoints.CheckpointError, match="header length .* exceeds the file size"):
        SafetensorsFile(str(path))
    path.write_bytes(b"\x01\x02")
    with pytest.raises(checkpoints.CheckpointError, match="shorter than the 8-byte header length"):
        SafetensorsFile(str(path))
