"""The co-active-pair accumulation (`accumulate="sparse"`) against the dense float64 numpy
definitions and against the dense jitted path (on one device and sharded over 8 simulated
ones), on sparse codes with dead, always-on, copied and AND / OR latents and one token on which
every latent fires; and the code cache: the source runs once however many passes and blocks
read it."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _evolution_ref import all_measures

import jaxlens
from sae import evolution
from sae.evolution import coactive, codes, store, stream

# Prime sizes; 3 layers (2 pairs); low density so most pairs never co-occur.
T, N, L = 211, 17, 3


def _codes(rng, density=0.06) -> np.ndarray:
    on = rng.random((L, T, N)) < density
    x = (on * rng.uniform(0.1, 2.0, (L, T, N))).astype(np.float32)
    x[:, 17] = rng.uniform(0.1, 1.0, (L, N))  # a token where every latent fires
    x[0, :, 4] = 0.0  # dead
    x[1, :, 7] = 0.0
    x[0, :, 9] = rng.uniform(1.0, 1.5, T)  # always on
    x[1, :, 3] = 0.7 * x[0, :, 5]  # copied
    x[1, :, 11] = np.where((x[0, :, 1] > 0) & (x[0, :, 2] > 0), 1.3, 0.0)  # AND
    x[2, :, 12] = np.where((x[1, :, 1] > 0) | (x[1, :, 2] > 0), 0.9, 0.0)  # OR
    return x


@pytest.fixture(scope="module")
def acts():
    return _codes(np.random.default_rng(0))


def _source(x, batch=37):
    return lambda: (x[:, s : s + batch] for s in range(0, x.shape[1], batch))


def _pass(x, fraction, accumulate, *, top_k=N, mesh=None, block=None, batch=37):
    src = _source(x, batch)
    summary = stream.first_pass(src, mesh=mesh)
    options = stream.PassOptions(
        measures=evolution.TOKEN_MEASURES,
        threshold=fraction,
        top_k=top_k,
        accumulate=accumulate,
        block=block,
    )
    return stream.pair_pass(src, summary, options, mesh=mesh, keep_dense=True)


@pytest.fixture(scope="module")
def sparse_runs(acts):
    """Per threshold: the sparse pass (top-k of all N) and the numpy references per pair."""
    return {
        f: (_pass(acts, f, "sparse"), [all_measures(acts[p], acts[p + 1], f) for p in range(L - 1)])
        for f in (0.0, 0.2)
    }


def _close(got, want, name):
    assert not np.isnan(got).any(), name
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("fraction", [0.0, 0.2])
def test_sparse_pass_equals_numpy_definitions(sparse_runs, fraction):
    (nb, dense), refs = sparse_runs[fraction]
    for p, ref in enumerate(refs):
        for name, want in ref.items():
            _close(dense[name][p], want, name)
            # top-k over all N pairs (k = N): every row and column sorted, absent pairs included
            _close(nb.row_values[name][p], -np.sort(-want, axis=1), name)
            _close(nb.col_values[name][p], -np.sort(-want.T, axis=1), name)
            picked = np.take_along_axis(want, nb.row_index[name][p].astype(int), 1)
            _close(picked, nb.row_values[name][p], name)
            picked = np.take_along_axis(want.T, nb.col_index[name][p].astype(int), 1)
            _close(picked, nb.col_values[name][p], name)
    # absent pairs are not zero under Pearson: the always-on latent against a sparse one
    assert dense["pearson"][0][9].min() < -1e-3


def test_sparse_top_k_equals_dense_path(acts, sparse_runs):
    sparse, _ = _pass(acts, 0.2, "sparse", top_k=5)  # k < N: absent pairs ranked, not listed
    dense, _ = _pass(acts, 0.2, "dense", top_k=5, block=7)
    for field in evolution.Neighbours._fields:
        for name in evolution.TOKEN_MEASURES:
            got, want = getattr(sparse, field)[name], getattr(dense, field)[name]
            if "values" in field:
                _close(got, want, name)
                continue
            values = getattr(sparse, field.replace("index", "values"))[name]
            distinct = values[..., 0] - values[..., 1] > 1e-4  # the best neighbour is unique
            np.testing.assert_array_equal(got[..., 0][distinct], want[..., 0][distinct])


def test_lineage_on_the_sparse_statistics(sparse_runs):
    (nb, dense), _ = sparse_runs[0.0]
    assert nb.row_index["pearson"][0, 5, 0] == 3 and nb.row_values["pearson"][0, 5, 0] > 0.999
    # AND: latent 11 never fires without 1 and 2 (nor without the always-on 9)
    np.testing.assert_allclose(dense["necessity"][0][[1, 2, 9], 11], 1.0)
    # OR: 1 or 2 firing is enough for 12
    np.testing.assert_allclose(dense["sufficiency"][1][[1, 2], 12], 1.0)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_sparse_equals_the_sharded_dense_pass_on_eight_devices(acts):
    # the sparse path runs on the host; on a mesh "auto" takes the sharded dense path, whose
    # values must equal the host path's
    x = np.pad(acts[:, :200], ((0, 0), (0, 0), (0, 7)))  # 24 latents: 6 per tensor shard
    mesh = jaxlens.sharding.make_mesh(data=2, tensor=4)
    summary = stream.first_pass(_source(x, 40), mesh=mesh)
    assert stream.choose_accumulate("auto", summary, mesh) == "dense"
    nb_mesh, d_mesh = _pass(x, 0.2, "auto", top_k=6, mesh=mesh, batch=40)
    nb_host, d_host = _pass(x, 0.2, "sparse", top_k=6, batch=40)
    for name in evolution.TOKEN_MEASURES:
        _close(d_host[name], d_mesh[name], name)
        _close(nb_host.row_values[name], nb_mesh.row_values[name], name)
        _close(nb_host.col_values[name], nb_mesh.col_values[name], name)


def test_auto_picks_sparse_for_sparse_codes_on_cpu(acts):
    rng = np.random.default_rng(1)
    sparse_codes = (rng.random((L, 97, 101)) < 0.01).astype(np.float32)
    summary = stream.first_pass(_source(sparse_codes))
    want = "sparse" if jax.default_backend() == "cpu" else "dense"
    assert stream.choose_accumulate("auto", summary, None) == want
    assert stream.choose_accumulate("auto", stream.first_pass(_source(acts)), None) == "dense"
    assert stream.choose_accumulate("dense", summary, None) == "dense"
    with pytest.raises(evolution.PassError, match="accumulate"):
        stream.PassOptions(accumulate="hashed")


def test_sparse_pass_resumes_without_reading_the_source(acts, tmp_path):
    src = _source(acts)
    summary = stream.first_pass(src)
    options = stream.PassOptions(top_k=5, accumulate="sparse", threshold=0.2)
    first, _ = stream.pair_pass(src, summary, options, out_dir=tmp_path)

    def broken():
        raise AssertionError("a finished pass must not read its source again")

    again, _ = stream.pair_pass(broken, summary, options, out_dir=tmp_path)
    for name in options.measures:
        np.testing.assert_array_equal(first.row_values[name], again.row_values[name])
        np.testing.assert_array_equal(first.col_index[name], again.col_index[name])


class _Counting:
    """A source that counts its batches (a stand-in for the model forward and SAE encodes)."""

    def __init__(self, x):
        self.x, self.batches = x, 0

    def __call__(self):
        for s in range(0, self.x.shape[1], 37):
            self.batches += 1
            yield self.x[:, s : s + 37]


@pytest.mark.parametrize("on_disk", [False, True])
def test_cache_runs_the_source_once_across_a_blocked_pass(acts, tmp_path, on_disk):
    model = _Counting(acts)
    cache = codes.CodeCache(model, folder=tmp_path / "codes" if on_disk else None)
    summary = stream.first_pass(cache)
    # 3 blocks; the jitted functions are the ones test_sparse_top_k_equals_dense_path compiled
    options = stream.PassOptions(
        measures=evolution.TOKEN_MEASURES, top_k=5, block=7, accumulate="dense"
    )
    nb, _ = stream.pair_pass(cache, summary, options)
    stream.pair_pass(cache, summary, stream.PassOptions(top_k=4, accumulate="sparse"))
    assert model.batches == 6  # ceil(211 / 37): once per batch in all
    direct = _source(acts)
    want, _ = stream.pair_pass(direct, stream.first_pass(direct), options)
    for name in options.measures:  # the cached codes are the same values, bit for bit
        np.testing.assert_array_equal(nb.row_values[name], want.row_values[name])
    if on_disk:  # a new cache over the same folder reads the shards, not the model
        again = codes.CodeCache(model, folder=tmp_path / "codes", dense=True)
        np.testing.assert_array_equal(np.concatenate(list(again()), axis=1), acts)
        assert model.batches == 6


def test_full_edges_equal_on_both_paths(acts, sparse_runs, tmp_path):
    (_, dense), _ = sparse_runs[0.2]
    src = _source(acts)
    summary = stream.first_pass(src)
    for accumulate, block in (("sparse", None), ("dense", 7)):
        options = stream.PassOptions(
            measures=evolution.TOKEN_MEASURES,
            threshold=0.2,
            top_k=5,
            block=block,
            accumulate=accumulate,
            edge_measures=("pearson", "jaccard"),
        )
        stream.pair_pass(src, summary, options, out_dir=tmp_path / accumulate)
        for name in options.edge_measures:
            for p in range(L - 1):
                rows, cols, values = store.load_edges(tmp_path / accumulate, name, p)
                want = dense[name][p]
                clear = np.abs(want - 0.1) > 1e-4
                expected = set(zip(*np.nonzero((want >= 0.1) & clear), strict=True))
                assert {(a, b) for a, b in zip(rows, cols, strict=True) if clear[a, b]} == expected
                _close(values, want[rows, cols], name)
    with pytest.raises(evolution.PassError, match="edge_measures"):
        stream.PassOptions(edge_measures=("mutual_info",))


def test_killed_sparse_pass_resumes_to_the_same_result(acts, tmp_path, monkeypatch):
    monkeypatch.setattr(coactive, "CHECKPOINT_TOKENS", 1)  # save after every batch
    src = _source(acts)
    summary = stream.first_pass(src)
    options = stream.PassOptions(top_k=5, accumulate="sparse", threshold=0.2)
    want, _ = stream.pair_pass(src, summary, options)

    def killed():
        for i, batch in enumerate(src()):
            if i == 3:
                raise RuntimeError("killed")
            yield batch

    with pytest.raises(RuntimeError, match="killed"):
        stream.pair_pass(killed, summary, options, out_dir=tmp_path)
    assert (tmp_path / "coactive.npz").exists()
    added, add = [], coactive.PairAccumulator.add
    monkeypatch.setattr(coactive.PairAccumulator, "add", lambda acc, c: added.append(add(acc, c)))
    got, _ = stream.pair_pass(src, summary, options, out_dir=tmp_path)
    assert len(added) == 3  # the 3 batches summed before the kill are not summed again
    assert not (tmp_path / "coactive.npz").exists()
    for name in options.measures:
        np.testing.assert_allclose(got.row_values[name], want.row_values[name], atol=1e-6)
        np.testing.assert_allclose(got.col_values[name], want.col_values[name], atol=1e-6)
