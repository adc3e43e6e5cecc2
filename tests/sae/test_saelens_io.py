"""SAELens folders: our round trip, SAELens reading ours, ours reading SAELens's, bad files."""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np
import pytest

import sae
from sae import model

SAELENS_DIR = os.environ.get("SAE_PEERS_DIR", "/opt/jaxlens-peers/saelens")
D, N = 13, 41


def _random_params(config: sae.SAEConfig, seed: int = 0) -> dict:
    keys = jax.random.split(jax.random.key(seed), 4)
    params = model.init(keys[0], config)
    params["b_enc"] = 0.1 * jax.random.normal(keys[1], (N,))
    params["b_dec"] = 0.1 * jax.random.normal(keys[2], (D,))
    params["W_dec"] = params["W_dec"] * 1.7  # not unit norm: folding must keep it
    if config.has_threshold:
        params["threshold"] = 0.05 + 0.1 * jax.random.uniform(keys[3], (N,))
    return params


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
    for name in params:
        np.testing.assert_array_equal(np.asarray(loaded[name]), np.asarray(params[name]))
    np.testing.assert_allclose(
        sae.reconstruct(loaded, x, config=config),
        sae.reconstruct(params, x, config=config),
        rtol=0,
        atol=0,
    )


@pytest.fixture(scope="module")
def sae_lens():
    if os.path.isdir(SAELENS_DIR) and SAELENS_DIR not in sys.path:
        sys.path.append(SAELENS_DIR)  # after the main environment: its packages win
    return pytest.importorskip("sae_lens", reason="sae-lens is installed by .ci/peers/sae.sh")


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_saelens_loads_ours(arch, tmp_path, x, sae_lens):
    import torch

    config = CONFIGS[arch]
    params = _random_params(config, seed=1)
    sae.save_saelens(tmp_path, config, params)
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path), device="cpu")
    with torch.no_grad():
        out = theirs(torch.from_numpy(x)).numpy()
        feats = theirs.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, sae.reconstruct(params, x, config=config), atol=2e-5)
    np.testing.assert_allclose(feats, sae.encode(params, x, config=config), atol=2e-5)


@pytest.mark.parametrize(
    "their_arch,extra",
    [
        ("standard", {}),
        ("topk", {"k": 4}),
        ("topk", {"k": 4, "rescale_acts_by_decoder_norm": True}),
        ("jumprelu", {}),
        ("standard", {"apply_b_dec_to_input": False}),
    ],
)
def test_ours_loads_saelens(their_arch, extra, tmp_path, x, sae_lens):
    import torch

    names = {"standard": "StandardSAE", "topk": "TopKSAE", "jumprelu": "JumpReLUSAE"}
    cfg = getattr(sae_lens, names[their_arch] + "Config")(d_in=D, d_sae=N, **extra)
    theirs = getattr(sae_lens, names[their_arch])(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        if their_arch == "jumprelu":
            theirs.threshold.copy_(torch.rand_like(theirs.threshold) * 0.2)
    theirs.save_model(str(tmp_path))
    config, params = sae.load_saelens(tmp_path)
    assert config.d_in == D and config.d_sae == N
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sae.reconstruct(params, x, config=config), expected, atol=2e-5)


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
