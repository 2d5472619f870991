"""Segmentation VQ-VAE: loader + parity with the equivalent PyTorch model, round trip, shapes, errors."""

import jax
import numpy as np
import pytest

from paligemma import vqvae

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional

D = 32  # codebook dimension for the tests (the released file's D is read from its arrays)


class _TorchResBlock(tnn.Module):
    def __init__(self, c):
        super().__init__()
        self.net = tnn.Sequential(
            tnn.Conv2d(c, c, 3, padding=1), tnn.ReLU(), tnn.Conv2d(c, c, 3, padding=1), tnn.ReLU(), tnn.Conv2d(c, c, 1)
        )

    def forward(self, x):
        return x + self.net(x)


class _TorchVQ(tnn.Module):
    def __init__(self, d):
        super().__init__()
        self._embedding = tnn.Parameter(torch.randn(128, d))


class _TorchVQVAE(tnn.Module):
    """The released architecture with the same Sequential indices (see paligemma/vqvae.py)."""

    def __init__(self, d=D):
        super().__init__()
        self.encoder = tnn.Sequential(
            tnn.Conv2d(1, 16, 3, 2, 1),
            tnn.ReLU(),
            tnn.Conv2d(16, 32, 3, 2, 1),
            tnn.ReLU(),
            tnn.Conv2d(32, 64, 3, 2, 1),
            tnn.ReLU(),
            tnn.Conv2d(64, 128, 3, 2, 1),
            tnn.ReLU(),
            _TorchResBlock(128),
            _TorchResBlock(128),
            tnn.Conv2d(128, d, 1),
        )
        self._vq_vae = _TorchVQ(d)
        self.decoder = tnn.Sequential(
            tnn.Conv2d(d, 128, 1),
            tnn.ReLU(),
            _TorchResBlock(128),
            _TorchResBlock(128),
            tnn.ConvTranspose2d(128, 128, 4, 2, 1),
            tnn.ReLU(),
            tnn.ConvTranspose2d(128, 64, 4, 2, 1),
            tnn.ReLU(),
            tnn.ConvTranspose2d(64, 32, 4, 2, 1),
            tnn.ReLU(),
            tnn.ConvTranspose2d(32, 16, 4, 2, 1),
            tnn.ReLU(),
            tnn.Conv2d(16, 1, 1),
        )
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # LeCun-normal weights: outputs O(0.1..1), so a 1e-5 tolerance means something
            for m in self.modules():
                if isinstance(m, (tnn.Conv2d, tnn.ConvTranspose2d)):
                    fan_in = m.weight[0].numel() if isinstance(m, tnn.Conv2d) else m.weight.shape[0] * 4
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)

    def encode_same(self, x):
        """TensorFlow-"SAME" stride-2 convs (pad 0 before, 1 after), as big_vision encodes the targets."""
        for i in (0, 2, 4, 6):
            conv = self.encoder[i]
            x = F.relu(F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2))
        return self.encoder[10](self.encoder[9](self.encoder[8](x)))


@pytest.fixture(scope="module")
def torch_model_and_params(tmp_path_factory):
    torch.manual_seed(0)
    model = _TorchVQVAE().eval()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("vae") / "vae-test.npz"
    np.savez(path, **state)
    return model, state, vqvae.load_params(path)


def _masks(n, seed=0):
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:64, :64]
    out = []
    for _ in range(n):
        cy, cx, r = rng.randint(10, 54), rng.randint(10, 54), rng.randint(5, 25)
        out.append(np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, 1.0, -1.0))
    return np.asarray(out, np.float32)


def test_expected_keys_match_torch_state_dict(torch_model_and_params):
    _, state, _ = torch_model_and_params
    assert sorted(state) == sorted(vqvae.expected_keys())
    assert len(vqvae.expected_keys()) == 1 + 2 * (5 + 6 + 6 + 1 + 4 + 1)


def test_decoder_matches_torch(torch_model_and_params):
    model, _, params = torch_model_and_params
    codes = np.random.RandomState(1).randint(0, 128, (4, 16))
    with torch.no_grad():
        q = model._vq_vae._embedding[torch.as_tensor(codes.reshape(-1))].reshape(4, 4, 4, D).permute(0, 3, 1, 2)
        want = model.decoder(q)[:, 0].numpy()
    got = np.asarray(vqvae.decode(params, codes))
    assert got.shape == (4, 64, 64) and got.dtype == np.float32
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(vqvae.decode_jit(params, codes)), got, atol=1e-6, rtol=0)


@pytest.mark.parametrize("padding", ["TORCH", "SAME"])
def test_encoder_matches_torch(torch_model_and_params, padding):
    model, _, params = torch_model_and_params
    masks = _masks(3)
    x = torch.as_tensor(masks)[:, None]
    with torch.no_grad():
        z = (model.encoder(x) if padding == "TORCH" else model.encode_same(x)).permute(0, 2, 3, 1)
        emb = model._vq_vae._embedding
        dist = (z.reshape(-1, D) ** 2).sum(1, keepdim=True) + (emb**2).sum(1) - 2 * z.reshape(-1, D) @ emb.T
        want_codes = dist.argmin(1).reshape(3, 16).numpy()
    got_z = np.asarray(vqvae.encode_continuous(params, masks, padding=padding))
    assert got_z.shape == (3, 4, 4, D)
    assert np.abs(z.numpy()).max() > 0.1
    np.testing.assert_allclose(got_z, z.numpy(), atol=1e-5, rtol=0)
    codes = np.asarray(vqvae.encode(params, masks, padding=padding))
    assert codes.shape == (3, 16) and codes.dtype == np.int32
    np.testing.assert_array_equal(codes, want_codes)


def test_same_and_torch_padding_differ(torch_model_and_params):
    _, _, params = torch_model_and_params
    masks = _masks(1, seed=3)
    a = np.asarray(vqvae.encode_continuous(params, masks, padding="SAME"))
    b = np.asarray(vqvae.encode_continuous(params, masks, padding="TORCH"))
    assert np.abs(a - b).max() > 1e-3


def test_round_trip_with_codebook_made_of_latents():
    params = vqvae.init_params(
        jax.random.PRNGKey(0),
        embedding_dim=16,
        encoder_channels=(8, 8, 16, 16),
        decoder_hidden=16,
        decoder_channels=(16, 16, 8, 8),
    )
    masks = _masks(2, seed=5)
    z = np.asarray(vqvae.encode_continuous(params, masks)).reshape(-1, 16)
    params["codebook"] = np.concatenate([z, np.full((96, 16), 100.0, np.float32)])  # 32 latents + far rows
    codes = np.asarray(vqvae.encode(params, masks))
    assert codes.shape == (2, 16) and codes.min() >= 0 and codes.max() < 32
    np.testing.assert_allclose(params["codebook"][codes.reshape(-1)], z, atol=1e-6)
    logits = np.asarray(vqvae.decode(params, codes))
    assert logits.shape == (2, 64, 64) and np.all(np.isfinite(logits))
    # Codes outside 0..127 are clipped, not NaN.
    assert np.all(np.isfinite(np.asarray(vqvae.decode(params, np.full((1, 16), 500)))))


def test_jit_encode_and_decode():
    params = vqvae.init_params(
        1, embedding_dim=8, encoder_channels=(4, 4, 4, 8), decoder_hidden=8, decoder_channels=(8, 8, 8, 8)
    )
    masks = _masks(2, seed=7)
    codes = vqvae.encode_jit(params, masks)
    np.testing.assert_array_equal(np.asarray(codes), np.asarray(vqvae.encode(params, masks)))
    assert vqvae.decode_jit(params, codes).shape == (2, 64, 64)


def test_loader_tolerates_names_without_net_and_module_prefix(torch_model_and_params, tmp_path):
    _, state, params = torch_model_and_params
    renamed = {"module." + k.replace(".net.", "."): v for k, v in state.items()}
    renamed["_vq_vae._ema_w"] = np.zeros((128, D), np.float32)  # EMA buffer: ignored
    np.savez(tmp_path / "renamed.npz", **renamed)
    other = vqvae.load_params(tmp_path / "renamed.npz")
    codes = np.arange(16)[None]
    np.testing.assert_array_equal(np.asarray(vqvae.decode(other, codes)), np.asarray(vqvae.decode(params, codes)))


def test_loader_errors(torch_model_and_params):
    _, state, _ = torch_model_and_params
    broken = dict(state)
    del broken["decoder.6.weight"]
    broken["decoder.14.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(
        ValueError,
        match=r"(?s)missing keys \(1\).*decoder\.6\.weight.*unexpected keys \(1\).*"
        r"decoder\.14\.weight",
    ):
        vqvae.params_from_state_dict(broken)
    bad_shape = dict(state)
    bad_shape["decoder.0.weight"] = np.zeros((128, D + 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="decoder Conv_0"):
        vqvae.params_from_state_dict(bad_shape)
    decoder_only = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    with pytest.raises(ValueError, match="encoder.0.weight"):
        vqvae.params_from_state_dict(decoder_only)
    p = vqvae.params_from_state_dict(decoder_only, require_encoder=False)
    assert p["encoder"] is None
    with pytest.raises(ValueError, match="no encoder"):
        vqvae.encode(p, _masks(1))
