"""jaxlens.probes: planted directions, shuffled labels, group splits, score-mean, AUC."""

import numpy as np
import pytest

from jaxlens import probes


def _planted(seed=0, n_layers=3, groups=60, per=5, d=97, layer=1):
    """Activations where only `layer` carries y along a planted unit direction."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    g = np.repeat(np.arange(groups), per)
    y_group = rng.integers(10, 51, size=groups).astype(float)
    y = y_group[g]
    acts = rng.normal(size=(n_layers, len(y), d))
    acts[layer] += 0.5 * (y - y.mean())[:, None] * direction
    return acts, y, g, direction


def _ref_spearman(a, b):
    def ranks(x):  # brute force average ranks
        return np.array([(x < v).sum() + ((x == v).sum() + 1) / 2 for v in x])

    return np.corrcoef(ranks(a), ranks(b))[0, 1]


@pytest.mark.parametrize("method", ["ridge", "score_mean"])
def test_recovers_planted_direction(method):
    acts, y, g, direction = _planted()
    probe = probes.fit(acts, y, groups=g, method=method)
    assert probe.directions.shape == (3, 97)
    np.testing.assert_allclose(np.linalg.norm(probe.directions, axis=1), 1.0, rtol=1e-6)
    assert abs(probe.directions[1] @ direction) > 0.95
    assert probe.test_spearman[1] > 0.9 and probe.best_layer == 1
    assert probe.test_r2[1] > 0.8
    assert probe.test_spearman[0] < 0.5 and probe.test_spearman[2] < 0.5
    # the reported metric is the Spearman of the probe's own predictions on held-out samples
    pred = probe.predict(acts)[1, probe.test_index]
    assert abs(_ref_spearman(pred, y[probe.test_index]) - probe.test_spearman[1]) < 1e-6


def test_shuffled_labels_give_nothing():
    acts, y, g, _ = _planted(seed=1)
    rng = np.random.default_rng(5)
    perm = rng.permutation(60)
    y_shuffled = y.reshape(60, 5)[perm].reshape(-1)  # shuffle labels across groups
    probe = probes.fit(acts, y_shuffled, groups=g)
    assert np.all(probe.test_r2 < 0.1)
    assert np.all(np.abs(probe.test_spearman) < 0.35)


def test_group_split_never_leaks():
    g = np.repeat(np.arange(23), 7)
    for seed in range(5):
        train, test = probes.group_split(g, 0.2, seed)
        assert not set(g[train]) & set(g[test])
        assert len(train) + len(test) == len(g)
    acts, y, g, _ = _planted(seed=2)
    probe = probes.fit(acts, y, groups=g, seed=3)
    assert not set(g[probe.train_index]) & set(g[probe.test_index])


def test_rank_and_spearman_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 40).astype(float)
    assert abs(probes.spearman(a, b) - _ref_spearman(a, b)) < 1e-9


def test_auc_and_cosines():
    assert probes.auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert probes.auc([1.0], [1.0]) == 0.5
    assert probes.auc([0.0, 2.0], [1.0]) == 0.5
    d = np.random.default_rng(0).normal(size=(4, 2, 11))
    c = probes.cosines(d)
    assert c.shape == (2, 4, 4)
    np.testing.assert_allclose(np.diagonal(c, axis1=1, axis2=2), 1.0)
    ref = d[1, 0] @ d[2, 0] / np.linalg.norm(d[1, 0]) / np.linalg.norm(d[2, 0])
    assert abs(c[0, 1, 2] - ref) < 1e-12


def test_bad_inputs():
    with pytest.raises(probes.ProbeError, match="acts"):
        probes.fit(np.zeros((4, 5)), np.zeros(4))
    with pytest.raises(probes.ProbeError, match="method"):
        probes.fit(np.zeros((1, 10, 3)), np.zeros(10), method="lasso")
    with pytest.raises(probes.ProbeError, match="y"):
        probes.fit(np.zeros((1, 10, 3)), np.zeros(9))


def test_save_load_round_trip(tmp_path):
    acts, y, g, _ = _planted(seed=2)
    named = {"EXT": probes.fit(acts, y, groups=g), "AGR": probes.fit(acts, -y, groups=g)}
    probes.save(tmp_path / "probes.npz", named)
    back = probes.load(tmp_path / "probes.npz")
    assert set(back) == {"EXT", "AGR"}
    for name, p in named.items():
        for field, value in p._asdict().items():
            np.testing.assert_array_equal(getattr(back[name], field), value, err_msg=field)
        np.testing.assert_array_equal(back[name].predict(acts), p.predict(acts))
    partial = {k: v for k, v in np.load(tmp_path / "probes.npz").items() if k != "AGR/coef"}
    np.savez(tmp_path / "partial.npz", **partial)
    with pytest.raises(probes.ProbeError, match="'AGR' lacks \\['coef'\\]"):
        probes.load(tmp_path / "partial.npz")
    np.savez(tmp_path / "empty.npz", x=np.zeros(1))
    with pytest.raises(probes.ProbeError, match="no probes"):
        probes.load(tmp_path / "empty.npz")
