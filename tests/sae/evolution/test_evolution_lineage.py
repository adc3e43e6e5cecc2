"""Planted structure across three layers: a copied latent passes with rho ~ 1, an AND and an OR
latent are found, the rest vanish; two disconnected clusters become separate communities;
a pass killed mid-way resumes to the uninterrupted result; the unrepresented projection."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from _evolution_ref import sparse_latents

from sae import evolution
from sae.evolution import lineage, stream

T, N = 400, 12  # tokens, latents per layer
COPY, AND, OR = 0, 1, 2  # planted layer-1 latents


def _planted() -> np.ndarray:
    """`[3, T, N]`: layer 1 = {copy of L0 #2, AND(L0 #3, #4), OR(L0 #5, #6), noise}, layer 2
    copies layer 1 shifted by one latent, so every layer-1 latent passes to layer 2."""
    rng = np.random.default_rng(0)
    l0 = sparse_latents(rng, T, N, density=0.35)
    l1 = sparse_latents(rng, T, N, density=0.35)
    l1[:, COPY] = 2.0 * l0[:, 2]
    l1[:, AND] = np.minimum(l0[:, 3], l0[:, 4])
    l1[:, OR] = l0[:, 5] + l0[:, 6]
    l1[:, 11] = 0.0  # dead
    l2 = np.roll(l1, 1, axis=1) * 1.5
    return np.stack([l0, l1, l2]).astype(np.float32)


@pytest.fixture(scope="module")
def acts():
    return _planted()


def _source(acts, batch=80):
    return lambda: (acts[:, s : s + batch] for s in range(0, acts.shape[1], batch))


OPTIONS = evolution.PassOptions(measures=("pearson", "sufficiency", "necessity"), block=5, top_k=4)


@pytest.fixture(scope="module")
def passed(acts):
    source = _source(acts)
    summary = evolution.first_pass(source, top_contexts=3)
    neighbours, dense = evolution.pair_pass(source, summary, OPTIONS, keep_dense=True)
    return summary, neighbours, dense


def test_copied_latent_passes_with_rho_one(passed):
    _, nb, dense = passed
    c = evolution.classify(dense["pearson"][0], threshold=0.95)
    assert c["passed"][2] and c["partner"][2] == COPY
    assert dense["pearson"][0][2, COPY] > 0.999
    assert c["passed"].sum() == 1 and (~c["new"]).sum() == 1  # only the copy crosses 0 -> 1
    top = evolution.classify_top(
        nb.row_values["pearson"][0],
        nb.row_index["pearson"][0],
        nb.col_values["pearson"][0],
        threshold=0.95,
    )
    for key in c:
        np.testing.assert_array_equal(top[key], c[key])
    # layer 1 -> 2 is a permuted copy: every live latent passes to latent + 1
    c12 = evolution.classify(dense["pearson"][1])
    live = np.arange(N - 1)
    assert c12["passed"][live].all() and np.all(c12["partner"][live] == live + 1)


def test_and_or_found(passed):
    _, nb, dense = passed
    found = evolution.and_or(dense["necessity"][0], dense["sufficiency"][0])
    assert found == {"and": {AND: (3, 4)}, "or": {OR: (5, 6)}}
    top = evolution.and_or_top(
        nb.col_values["necessity"][0],
        nb.col_index["necessity"][0],
        nb.col_values["sufficiency"][0],
        nb.col_index["sufficiency"][0],
    )
    assert top == found


def test_top_contexts_are_the_highest_activations(acts, passed):
    summary = passed[0]
    for layer, latent in [(0, 2), (1, OR), (2, 5)]:
        col = acts[layer, :, latent]
        want = np.sort(col)[::-1][:3]
        np.testing.assert_allclose(summary.top_values[layer, latent], want)
        np.testing.assert_allclose(col[summary.top_index[layer, latent]], want)
    assert np.all(summary.fires[1, 11] == 0) and summary.max[1, 11] == 0


def test_turnover_table_counts_live_latents(passed):
    summary, nb, _ = passed
    rows = evolution.turnover(
        nb.row_values["pearson"], nb.col_values["pearson"], summary.fires, thresholds=(0.95,)
    )
    assert rows[0]["passed@0.95"] == pytest.approx(1 / 12)
    assert rows[1]["live_a"] == 11 and rows[1]["passed@0.95"] == 1.0
    lineage.sankey_figure(rows).clf()


def test_resume_equals_uninterrupted(acts, tmp_path):
    source = _source(acts)
    summary = evolution.first_pass(source)
    want, _ = evolution.pair_pass(source, summary, OPTIONS)

    calls = {"n": 0}

    def dying():  # the second block's read fails after one batch, like a killed process
        calls["n"] += 1
        for i, batch in enumerate(source()):
            if calls["n"] == 2 and i == 1:
                raise KeyboardInterrupt
            yield batch

    with pytest.raises(KeyboardInterrupt):
        evolution.pair_pass(dying, summary, OPTIONS, out_dir=tmp_path)
    calls["n"] = 10  # no more failures; count the reads the resumed pass makes
    got, _ = evolution.pair_pass(dying, summary, OPTIONS, out_dir=tmp_path)
    assert calls["n"] == 12  # blocks 2 and 3 only: block 1 came from disk
    for field in ("row_values", "row_index", "col_values", "col_index"):
        for m in OPTIONS.measures:
            np.testing.assert_array_equal(getattr(got, field)[m], getattr(want, field)[m])
    with pytest.raises(stream.PassError, match="other options"):
        evolution.pair_pass(source, summary, evolution.PassOptions(block=3), out_dir=tmp_path)


@pytest.mark.parametrize("method", ["louvain", "leiden"])
def test_communities_separate_two_planted_clusters(method, tmp_path):
    rng = np.random.default_rng(1)
    P, A, k = 2, 8, 4
    index = np.zeros((P, A, k), np.int64)
    for a in range(A):  # cluster 0: latents 0-3 in every layer; cluster 1: latents 4-7
        base = 0 if a < 4 else 4
        index[:, a] = base + rng.permutation(4)
    values = rng.uniform(0.3, 1.0, (P, A, k))
    g = evolution.feature_graph(values, index, min_weight=0.1)
    assert g.number_of_nodes() == 3 * A and nx.number_weakly_connected_components(g) == 2
    comm = evolution.communities(g, method=method, seed=0)
    cluster = {node: node[1] // 4 for node in g.nodes}
    for c in set(comm.values()):
        members = [node for node, cc in comm.items() if cc == c]
        assert len({cluster[node] for node in members}) == 1, members
    assert len(set(comm.values())) >= 2
    path = evolution.save_node_link(tmp_path / "g.json", g, [n for n in g if cluster[n] == 0])
    back = evolution.graph.load_node_link(path)
    assert set(back.edges) == {e for e in g.edges if cluster[e[0]] == 0}


def test_projection_tells_unrepresented_from_vanished():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(2, 16)).astype(np.float32)
    f = sparse_latents(rng, 300, 2)
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    err = f[:, :1] * np.linalg.norm(w[0]) * unit[0]  # latent 0's write is still in the error
    err += 0.01 * rng.normal(size=err.shape)
    proj = lineage.ProjectionStats(w)
    proj.update(f[:150], err[:150])
    proj.update(f[150:], err[150:])
    out = proj.result()
    assert out["ratio"][0] == pytest.approx(1.0, abs=0.05)
    assert abs(out["ratio"][1]) < 0.2
    assert out["unrepresented"].tolist() == [True, False]
