"""Test-wide settings: CPU only, 8 host devices for sharding tests, float32 matmuls at full precision."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


# ----------------------------------------------------------------------------------------------------------
# Shared fixtures: tiny tokenizers, a tiny model with random weights, the tiny training assets.
# ----------------------------------------------------------------------------------------------------------

import functools  # noqa: E402
import runpy  # noqa: E402

import pytest  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TOKENIZER_VOCAB = 400  # pieces of the default test tokenizer before the 1152 loc/seg tokens
PLAIN_TOKENIZER_VOCAB = 300  # pieces of the plain (no loc/seg) variant


@functools.cache
def fixture_module(*rel: str) -> dict:
    """The globals of a helper under tests/fixtures/ that also runs outside pytest (loaded once, by path)."""
    return runpy.run_path(os.path.join(FIXTURES, *rel))


def tokenizer_corpus() -> list[str]:
    """Short VQA/caption/detection texts (with loc tokens) over a few objects and colours: the default corpus."""
    things = ["car", "dog", "cat", "house", "tree", "bird", "boat", "apple", "chair", "person"]
    colors = ["red", "blue", "green", "yellow", "white", "black"]
    texts = []
    for i, o in enumerate(things):
        for j, c in enumerate(colors):
            texts.append(f"answer en what is the color of the {o}?\nthe {o} is {c}.")
            texts.append(f"caption en\na {c} {o} next to a {colors[(i + j) % 6]} {things[(i + 2 * j) % 10]}.")
            texts.append(f"answer en how many {o}s are there?\n{i + j}")
        texts.append(f"detect {o}\n<loc0{i:02d}0><loc0100><loc05{i}0><loc1000> {o}")
    return texts


def make_tokenizer(variant: str, path: str) -> str:
    """Trains the test tokenizer `variant` into `path` (the one implementation behind the tokenizer fixtures).

    default: `tokenizer_corpus()`, TOKENIZER_VOCAB pieces + the loc/seg tokens, Gemma's special ids.
    plain:   the same without the loc/seg pieces (PLAIN_TOKENIZER_VOCAB pieces), like the plain Gemma tokenizer.
    easyvqa: the easy-VQA config's tokenizer (every easy-VQA training question and answer), as the GCS helper makes.
    """
    from paligemma.tokenizer import train_tokenizer

    if variant == "default":
        train_tokenizer(tokenizer_corpus(), path, vocab_size=TOKENIZER_VOCAB)
    elif variant == "plain":
        from sentencepiece import sentencepiece_model_pb2 as sp_pb2

        tok = train_tokenizer(tokenizer_corpus(), None, vocab_size=PLAIN_TOKENIZER_VOCAB)
        proto = sp_pb2.ModelProto()
        proto.ParseFromString(tok.serialized_model_proto())
        kept = [p for p in proto.pieces if not p.piece.startswith(("<loc", "<seg"))]
        del proto.pieces[:]
        proto.pieces.extend(kept)
        with open(path, "wb") as f:
            f.write(proto.SerializeToString())
    elif variant == "easyvqa":
        fixture_module("gcs", "easyvqa_gcs.py")["train_easyvqa_tokenizer"](path)
    else:
        raise ValueError(f"unknown tokenizer variant {variant!r}")
    return path


@pytest.fixture(scope="session")
def tokenizer_files(tmp_path_factory):
    """`variant -> path` of a tokenizer file trained once per session (see `make_tokenizer`). Read-only: copy a file
    before changing it."""
    root = tmp_path_factory.mktemp("tokenizers")
    paths = {}

    def get(variant: str = "default") -> str:
        if variant not in paths:
            paths[variant] = make_tokenizer(variant, str(root / f"{variant}.model"))
        return paths[variant]

    return get


@pytest.fixture(scope="session")
def tokenizer_path(tokenizer_files) -> str:
    """The default test tokenizer's file (for pp strings, CLIs and subprocesses)."""
    return tokenizer_files("default")


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path):
    """The default test tokenizer (`paligemma.tokenizer.Tokenizer`, TOKENIZER_VOCAB + 1152 pieces)."""
    from paligemma.tokenizer import Tokenizer

    return Tokenizer(tokenizer_path)


@pytest.fixture(scope="session")
def plain_tokenizer_path(tokenizer_files) -> str:
    """A SentencePiece model without the loc/seg pieces (PLAIN_TOKENIZER_VOCAB pieces), like plain Gemma's."""
    return tokenizer_files("plain")


@pytest.fixture(scope="session")
def easyvqa_tokenizer_path(tokenizer_files) -> str:
    """The easy-VQA config's tokenizer, trained on easy-VQA's questions and answers."""
    return tokenizer_files("easyvqa")


@pytest.fixture(scope="session")
def random_params():
    """`random_params(cfg, seed=0, scale=0.1)`: N(0, scale^2) numpy weights of any model config, from its shapes."""
    return fixture_module("tiny_model.py")["random_params"]


@pytest.fixture(scope="session")
def tiny_model(tokenizer, random_params):
    """`(cfg, params)` of the tiny PaliGemma (mu/8 at 32 px + gemma_tiny) sized to the default tokenizer, random
    weights (numpy, seed 0). Shared: do not modify the params in place."""
    cfg = fixture_module("tiny_model.py")["tiny_config"](tokenizer.vocab_size)
    return cfg, random_params(cfg)


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    """The tiny training run's assets folder (tests/fixtures/train/tiny.py: data.jsonl, images/, tokenizer.model)."""
    return fixture_module("train", "tiny.py")["make_assets"](str(tmp_path_factory.getbasetemp() / "tiny_train_assets"))


@pytest.fixture(scope="session")
def tokenizer_texts() -> list[str]:
    """The default tokenizer's training texts (`tokenizer_corpus()`)."""
    return tokenizer_corpus()
