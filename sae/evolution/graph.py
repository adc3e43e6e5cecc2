"""The feature graph: nodes `(layer, latent)`, edges L -> L+1 weighted by a similarity.

`feature_graph` turns the top-k neighbour lists of one measure into a `networkx.DiGraph` (an edge
where the similarity reaches `min_weight`; dead latents left out); `edge_graph` does the same
from every pair above the threshold (the full statistics a pass wrote to `edges/`).
`communities` groups nodes with Louvain (networkx) or Leiden (`leidenalg` on python-igraph),
both on the undirected weighted graph with a fixed seed. `node_link` writes any subgraph as
node-link JSON (nodes as `[layer, latent]`), readable by `networkx.node_link_graph` and by
JavaScript graph libraries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

METHODS = ("louvain", "leiden")


class GraphError(ValueError):
    """An unknown community method or an input of the wrong shape."""


def feature_graph(
    row_values: Any,
    row_index: Any,
    *,
    min_weight: float = 0.1,
    fires: Any = None,
    measure: str = "pearson",
) -> nx.DiGraph:
    """Edges `(p, a) -> (p + 1, b)` for every neighbour `b` of `a` with weight >= `min_weight`.

    Args:
        row_values, row_index: `[P, A, k]` top-k lists of one measure (P layer pairs).
        min_weight: smallest similarity kept as an edge.
        fires: optional `[L, N]` firing counts; latents that never fire get no node.
        measure: stored on every edge as its `measure` attribute.
    """
    values, index = np.asarray(row_values), np.asarray(row_index)
    if values.ndim != 3 or values.shape != index.shape:
        raise GraphError(
            f"row_values and row_index must be equal [P, A, k]; got "
            f"{values.shape} and {index.shape}"
        )
    g = nx.DiGraph()
    live = None if fires is None else np.asarray(fires) > 0
    for p, a, j in zip(*np.nonzero(values >= min_weight), strict=True):
        b = int(index[p, a, j])
        if live is not None and not (live[p, a] and live[p + 1, b]):
            continue
        g.add_edge(
            (int(p), int(a)), (int(p) + 1, b), weight=float(values[p, a, j]), measure=measure
        )
    for node in g.nodes:
        g.nodes[node]["layer"], g.nodes[node]["latent"] = node
    return g


def edge_graph(
    edges: list[tuple[Any, Any, Any]],
    *,
    min_weight: float = 0.1,
    fires: Any = None,
    measure: str = "pearson",
) -> nx.DiGraph:
    """`feature_graph` from the full statistics: per layer pair p, `(rows, cols, values)` of
    every pair at or above the pass's edge threshold (`sae.evolution.store.load_edges`), not
    only each latent's top-k; edges below `min_weight` and dead latents left out."""
    g = nx.DiGraph()
    live = None if fires is None else np.asarray(fires) > 0
    for p, (rows, cols, values) in enumerate(edges):
        rows, cols, values = (np.asarray(x) for x in (rows, cols, values))
        keep = values >= min_weight
        if live is not None:
            keep &= live[p][rows] & live[p + 1][cols]
        g.add_weighted_edges_from(
            ((p, int(a)), (p + 1, int(b)), float(w))
            for a, b, w in zip(rows[keep], cols[keep], values[keep], strict=True)
        )
    nx.set_edge_attributes(g, measure, "measure")
    for node in g.nodes:
        g.nodes[node]["layer"], g.nodes[node]["latent"] = node
    return g


def _leiden(g: nx.Graph, seed: int) -> list[set]:
    import igraph
    import leidenalg

    nodes = list(g.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    ig = igraph.Graph(n=len(nodes), edges=[(pos[u], pos[v]) for u, v in g.edges])
    ig.es["weight"] = [float(d.get("weight", 1.0)) for _, _, d in g.edges(data=True)]
    part = leidenalg.find_partition(
        ig, leidenalg.ModularityVertexPartition, weights="weight", seed=seed
    )
    return [{nodes[i] for i in members} for members in part]


def communities(graph: nx.Graph, *, method: str = "louvain", seed: int = 0) -> dict[Any, int]:
    """`{node: community id}`, ids 0, 1, ... by decreasing community size."""
    if method not in METHODS:
        raise GraphError(f"method must be one of {METHODS}; got {method!r}")
    g = graph.to_undirected() if graph.is_directed() else graph
    if g.number_of_nodes() == 0:
        return {}
    if method == "louvain":
        groups = nx.community.louvain_communities(g, weight="weight", seed=seed)
    else:
        groups = _leiden(g, seed)
    groups = sorted(groups, key=lambda s: (-len(s), min(s)))
    return {node: c for c, members in enumerate(groups) for node in members}


def node_link(graph: nx.Graph, nodes: Iterable[Any] | None = None) -> dict[str, Any]:
    """Node-link data of `graph` (or of the subgraph on `nodes`), JSON-ready."""
    sub = graph if nodes is None else graph.subgraph(list(nodes))
    data = nx.node_link_data(sub, edges="links")
    for node in data["nodes"]:
        node["id"] = list(node["id"])
    for link in data["links"]:
        link["source"], link["target"] = list(link["source"]), list(link["target"])
    return data


def save_node_link(path: str | os.PathLike, graph: nx.Graph, nodes=None) -> Path:
    """Write `node_link(graph, nodes)` to `path` as JSON."""
    path = Path(path)
    path.write_text(json.dumps(node_link(graph, nodes)))
    return path


def load_node_link(path: str | os.PathLike) -> nx.DiGraph:
    """Read a graph `save_node_link` wrote (nodes back as `(layer, latent)` tuples)."""
    data = json.loads(Path(path).read_text())
    for node in data["nodes"]:
        node["id"] = tuple(node["id"])
    for link in data["links"]:
        link["source"], link["target"] = tuple(link["source"]), tuple(link["target"])
    return nx.node_link_graph(data, edges="links")
