"""SAELens folders: our round trip, SAELens reading ours, ours reading SAELens's, bad files."""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np
import pytest

import sae

SAELENS_DIR = os.environ.get("SAE_PEERS_DIR", "/opt/jaxlens-peers/saelens")
D, N = 13, 41


def _random_params(config: sae.SAEConfig, seed: int = 0) -> dict:
    """Every tensor perturbed at random: encoder not the decoder's transpose, decoder rows not
    unit norm, biases and thresholds of any size (a BatchTopK threshold may be exactly 0)."""
    rng = np.random.default_rng(seed)
    params = {
        "W_enc": 0.4 * rng.normal(size=(D, N)),
        "b_enc": 0.3 * rng.normal(size=N),
        "W_dec": 0.4 * rng.normal(size=(N, D)),
        "b_dec": 0.3 * rng.normal(size=D),
    }
    if config.architecture == "jumprelu":
        params["log_threshold"] = rng.normal(-1.5, 1.0, size=N)
    elif config.architecture == "batchtopk":
        params["threshold"] = np.abs(0.3 * rng.normal(size=N)) * (rng.random(N) < 0.8)
    return {name: jax.numpy.asarray(value, np.float32) for name, value in params.items()}


CONFIGS = {
    "relu": sae.SAEConfig(d_in=D, d_sae=N, architecture="relu"),
    "topk": sae.SAEConfig(d_in=D, d_sae=N, architecture="topk", k=5),
    "batchtopk": sae.SAEConfig(d_in=D, d_sae=N, architecture="batchtopk", k=5),
    "jumprelu": sae.SAEConfig(d_in=D, d_sae=N, architecture="jumprelu"),
}


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(29, D)).astype(np.float32)


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_round_trip_ours(arch, tmp_path, x):
    config = CONFIGS[arch]
    params = _random_params(config)
    sae.save_saelens(tmp_path / arch, config, params, metadata={"hook_name": "blocks.1.hook"})
    cfg = json.loads((tmp_path / arch / "cfg.json").read_text())
    assert int(cfg["metadata"]["sae_lens_version"].split(".")[0]) >= 6
    loaded_config, loaded = sae.load_saelens(tmp_path / arch)
    assert loaded_config == config
    assert sorted(loaded) == sorted(params)
    for name in params:  # log_threshold went through exp and log
        np.testing.assert_allclose(loaded[name], params[name], rtol=1e-6, atol=0, err_msg=name)
    np.testing.assert_allclose(
        sae.reconstruct(loaded, x, config=config),
        sae.reconstruct(params, x, config=config),
        rtol=0,
        atol=1e-6,
    )


@pytest.fixture(scope="module")
def sae_lens():
    if os.path.isdir(SAELENS_DIR) and SAELENS_DIR not in sys.path:
        sys.path.append(SAELENS_DIR)  # after the main environment: its packages win
    return pytest.importorskip("sae_lens", reason="sae-lens is installed by .ci/peers/sae.sh")


def _theirs(sae_lens, theirs, x):
    """SAELens's latents and reconstruction of x."""
    import torch

    with torch.no_grad():
        xt = torch.from_numpy(x)
        return theirs.encode(xt).numpy(), theirs(xt).numpy()


def _ours(config, params, x):
    return np.asarray(sae.encode(params, x, config=config)), np.asarray(
        sae.reconstruct(params, x, config=config)
    )


def _assert_same(got, want):
    for a, b, what in zip(got, want, ("latents", "reconstruction"), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5, err_msg=what)


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_ours_to_saelens_and_back(arch, tmp_path, x, sae_lens):
    """Ours -> SAELens computes the same; SAELens's save of it -> ours computes the same."""
    config = CONFIGS[arch]
    params = _random_params(config, seed=1)
    want = _ours(config, params, x)
    assert np.count_nonzero(want[0]) > x.shape[0]  # latents fire: the comparison means something
    sae.save_saelens(tmp_path / "ours", config, params)
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "ours"), device="cpu")
    _assert_same(_theirs(sae_lens, theirs, x), want)
    theirs.save_model(str(tmp_path / "theirs"))
    back_config, back = sae.load_saelens(tmp_path / "theirs")
    _assert_same(_ours(back_config, back, x), want)


THEIR_SAES = [
    ("standard", {}),
    ("topk", {"k": 4}),
    ("topk", {"k": 4, "rescale_acts_by_decoder_norm": True}),
    ("jumprelu", {}),
    ("standard", {"apply_b_dec_to_input": False}),
]


@pytest.mark.parametrize("their_arch,extra", THEIR_SAES)
def test_saelens_to_ours_and_back(their_arch, extra, tmp_path, x, sae_lens):
    """SAELens -> ours computes the same (JumpReLU thresholds of any sign, as SAELens allows);
    our save of it -> SAELens computes the same again."""
    import torch

    names = {"standard": "StandardSAE", "topk": "TopKSAE", "jumprelu": "JumpReLUSAE"}
    cfg = getattr(sae_lens, names[their_arch] + "Config")(d_in=D, d_sae=N, **extra)
    theirs = getattr(sae_lens, names[their_arch])(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        if their_arch == "jumprelu":  # negative, zero and positive thresholds
            theirs.threshold.copy_(torch.randn_like(theirs.threshold) * 0.3)
            theirs.threshold[:5] = 0.0
    want = _theirs(sae_lens, theirs, x)
    theirs.save_model(str(tmp_path / "theirs"))
    config, params = sae.load_saelens(tmp_path / "theirs")
    assert config.d_in == D and config.d_sae == N
    _assert_same(_ours(config, params, x), want)
    sae.save_saelens(tmp_path / "ours", config, params)
    again = sae_lens.SAE.load_from_disk(str(tmp_path / "ours"), device="cpu")
    _assert_same(_theirs(sae_lens, again, x), want)


def test_missing_and_corrupt_files(tmp_path):
    config = CONFIGS["jumprelu"]
    with pytest.raises(sae.SAELensFileNotFoundError, match="does not exist"):
        sae.load_saelens(tmp_path / "nowhere")
    folder = sae.save_saelens(tmp_path / "a", config, _random_params(config))
    (folder / "sae_weights.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(sae.SAELensFormatError, match="safetensors"):
        sae.load_saelens(folder)
    (folder / "sae_weights.safetensors").unlink()
    with pytest.raises(sae.SAELensFileNotFoundError, match="sae_weights"):
        sae.load_saelens(folder)
    (folder / "cfg.json").write_text("{broken")
    with pytest.raises(sae.SAELensFormatError, match="JSON"):
        sae.load_saelens(folder)


def test_wrong_shapes_and_architecture(tmp_path):
    config = CONFIGS["relu"]
    params = _random_params(config)
    bad = dict(params, W_enc=params["W_enc"][:, :-1])
    with pytest.raises(sae.SAELensFormatError, match="W_enc"):
        sae.save_saelens(tmp_path / "a", config, bad)
    folder = sae.save_saelens(tmp_path / "b", config, params)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.pop("jaxlens_config")
    cfg["architecture"] = "gated"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(sae.SAELensFormatError, match="gated"):
        sae.load_saelens(folder)
    cfg["architecture"] = "standard"
    cfg["d_sae"] = N + 1
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(sae.SAELensFormatError, match="shape"):
        sae.load_saelens(folder)
