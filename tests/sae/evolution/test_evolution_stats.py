"""Every measure against a dense float64 numpy computation: whole, blocked, sharded over 8
simulated devices, at both activity rules (> 0 and > a fraction of the max); dead latents 0."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _evolution_ref import all_measures, sparse_latents

import jaxlens
from sae import evolution

# Prime sizes so no block, batch or shard divides anything evenly by accident.
T, A, B, D = 211, 13, 11, 7


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    a = sparse_latents(rng, T, A)
    b = sparse_latents(rng, T, B)
    b[:, 3] = 0.7 * a[:, 5] + 0.01 * a[:, 1]  # a strongly related pair
    a[:, 4] = 0.0  # a dead latent on each side
    b[:, 7] = 0.0
    w_a = rng.normal(size=(A, D)).astype(np.float32)
    w_b = rng.normal(size=(B, D)).astype(np.float32)
    w_b[2] = 0.0  # a zero decoder row
    return a, b, w_a, w_b


def _check(out, ref):
    for name, want in ref.items():
        got = out[name]
        assert got.shape == want.shape, name
        assert not np.isnan(got).any(), name
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4, err_msg=name)


def _stats(data, fraction, block):
    a, b, w_a, w_b = data
    return evolution.layer_pair_stats(
        a,
        b,
        measures=evolution.MEASURES,
        threshold=fraction,
        decoders=(w_a, w_b),
        batch_size=37,
        block=block,
    )


@pytest.fixture(scope="module")
def whole(data):
    return _stats(data, 0.0, None)


def test_measures_match_numpy(data, whole):
    _check(whole, all_measures(*data[:2], 0.0, *data[2:]))


def test_blocked_with_fraction_threshold_matches_numpy(data):
    _check(_stats(data, 0.3, 4), all_measures(*data[:2], 0.3, *data[2:]))


def test_sharded_on_eight_devices_matches_numpy(data):
    assert len(jax.devices()) == 8, "conftest sets 8 simulated devices"
    a, b = (x[:200] for x in data[:2])
    mesh = jaxlens.sharding.make_mesh(data=2, tensor=4)
    # widths padded to 16 latents -> 4 per tensor shard; 40-token batches split over data
    out = evolution.layer_pair_stats(
        np.pad(a, ((0, 0), (0, 3))),
        np.pad(b, ((0, 0), (0, 5))),
        measures=evolution.TOKEN_MEASURES,
        threshold=0.2,
        batch_size=40,
        block=8,
        mesh=mesh,
    )
    ref = all_measures(a, b, 0.2)
    _check({k: v[:A, :B] for k, v in out.items()}, ref)
    assert np.all(out["pearson"][A:] == 0) and np.all(out["jaccard"][:, B:] == 0)


def test_dead_latents_give_zeros_not_nan(whole):
    for name, v in whole.items():
        if name == "decoder_cosine":
            assert np.all(v[:, 2] == 0) and np.abs(v).max() > 0  # the zero decoder row
            continue
        assert np.all(v[4] == 0), name  # dead earlier latent: its row
        assert np.all(v[:, 7] == 0), name  # dead later latent: its column
        assert np.abs(v).max() > 0, name


def test_copied_latent_has_pearson_one(whole):
    assert whole["pearson"][5, 3] > 0.999
    assert int(np.argmax(whole["pearson"][5])) == 3


def test_unknown_measure_and_bad_shapes_raise(data):
    a, b, _, _ = data
    with pytest.raises(evolution.MeasureError, match="not known"):
        evolution.layer_pair_stats(a, b, measures=("spearman",))
    with pytest.raises(evolution.MeasureError, match="decoders"):
        evolution.layer_pair_stats(a, b, measures=("decoder_cosine",))
    with pytest.raises(evolution.PassError, match="same tokens"):
        evolution.layer_pair_stats(a, b[:-1])
    with pytest.raises(evolution.PassError, match="threshold"):
        evolution.layer_pair_stats(a, b, threshold=1.5)


def test_sparse_update_matches_numpy(data):
    a, b, w_a, w_b = data
    # cap = every latent: the sparse path always applies, with blocks of 5 rows
    out = evolution.layer_pair_stats(
        a,
        b,
        measures=evolution.TOKEN_MEASURES,
        threshold=0.3,
        batch_size=37,
        block=5,
        sparse_cap=A,
    )
    _check(out, all_measures(a, b, 0.3))
