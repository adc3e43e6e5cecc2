"""Benchmark: pairwise cross-layer statistics, ours (JAX) against dense plain PyTorch.

    python scripts/bench_evolution.py --quick          # d_sae 1024 and 2048, under a minute
    python scripts/bench_evolution.py                  # d_sae 4096 and 16384 (the full sizes)

Both sides compute the same thing from the same activations: for two layers' SAE latents
`[T, N]` (TopK-like codes, `--k` active latents per token), the sums behind Pearson, activation
cosine, Jaccard, sufficiency, necessity and binary mutual information over all N x N latent
pairs, then the measures and each latent's top-k neighbours. The PyTorch side is written the way
the paper's code does it: per batch `a.T @ b` and `(a > 0).T @ (b > 0)` into dense N x N
accumulators, then dense N x N measure matrices. Ours is `sae.evolution.stream.pair_pass`
(jitted blocks; the sparse update, exact for codes with at most `--k` active latents a token).

Each side runs in its own subprocess (so peak memory is its own): one warm-up batch, then the
timed pass (ours: `pair_pass` only; its first pass, maxima and browser contexts, which the
PyTorch side has no counterpart of, runs before the clock starts). Reported: throughput in
token x latent-pair updates per second (T * N^2 / s), peak resident memory above the
process's baseline (after imports and data, so JAX's compiler counts), and the largest
difference of the top-1 Pearson values between the two sides. Ends with `RESULT` lines
(ratio > 1 means ours is better) and a run folder with `results.json` and `report.md`.

    python scripts/bench_evolution.py --paper-shape            # GPT-2 small shape, 24,576 latents
    python scripts/bench_evolution.py --paper-shape --quick    # a tiny shape, seconds

`--paper-shape` times the study's two parts separately at the paper's shape: a random model
of GPT-2 small's shape (`jaxlens.ModelConfig.gpt2_small()`) and random ReLU SAEs
(`sae.evolution.model_source.random_saes`) whose per-layer L0 is `GPT2_RES_JB_L0` (an
approximation of `gpt2-small-res-jb`'s), over byte-encoded `sae.stories` text: the source (one
model forward plus 12 encodes per batch, into the codes cache; tokens/s and its FLOP rate as a
fraction of a plain matmul's here) and the pair statistics given the codes (the co-active pass,
all 11 layer pairs; tokens/s); peak memory; each part's extrapolated time for 10M tokens; and
the dense PyTorch accumulation on one layer pair at `--peer-latents` latents against ours on
the same codes (per-token ratio).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    p.add_argument("--quick", action="store_true", help="d_sae 1024 and 2048, fewer tokens")
    p.add_argument("--sizes", type=int, nargs="+", help="d_sae values (default 4096 16384)")
    p.add_argument("--tokens", type=int, help="tokens per pass (default 16384, quick 8192)")
    p.add_argument("--batch", type=int, default=1024, help="tokens per accumulation step")
    p.add_argument("--k", type=int, default=32, help="active latents per token")
    p.add_argument("--block", type=int, default=None, help="our rows per block (None: all)")
    p.add_argument("--accumulate", default="auto", choices=("auto", "dense", "sparse"),
                   help="our pair sums (sae.evolution.stream.PassOptions)")  # fmt: skip
    p.add_argument("--paper-shape", action="store_true", help="GPT-2 small shape (docstring)")
    p.add_argument("--windows", type=int, default=64, help="--paper-shape: windows of 128")
    p.add_argument("--source-batch", type=int, default=4, help="--paper-shape: windows a batch")
    p.add_argument("--peer-latents", type=int, default=8192, help="--paper-shape: peer's N")
    p.add_argument("--out", default="runs/bench_evolution", help="run folder")
    p.add_argument("--worker", choices=("ours", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_codes(n_tokens: int, n: int, k: int, seed: int = 0) -> np.ndarray:
    """`[2, T, N]`: TopK-like codes; layer 1 copies half of each token's layer-0 latents."""
    rng = np.random.default_rng(seed)
    out = np.zeros((2, n_tokens, n), np.float32)
    rows = np.arange(n_tokens)[:, None]
    idx0 = rng.integers(0, n, (n_tokens, k))
    out[0, rows, idx0] = rng.uniform(0.1, 2.0, (n_tokens, k))
    idx1 = np.concatenate([idx0[:, : k // 2], rng.integers(0, n, (n_tokens, k - k // 2))], 1)
    out[1, rows, idx1] = rng.uniform(0.1, 2.0, (n_tokens, k))
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def worker_ours(codes: np.ndarray, args) -> tuple[float, np.ndarray]:
    from sae.evolution import stats, stream

    options = stream.PassOptions(
        measures=stats.TOKEN_MEASURES,
        top_k=8,
        block=args.block,
        sparse_cap=args.k,
        accumulate=args.accumulate,
    )
    b = args.batch

    def source(limit):
        return lambda: (codes[:, s : s + b] for s in range(0, limit, b))

    warm = stream.first_pass(source(b))
    stream.pair_pass(source(b), warm, options)  # compiles
    summary = stream.first_pass(source(codes.shape[1]))  # maxima and contexts: not timed
    t0 = time.perf_counter()
    nb, _ = stream.pair_pass(source(codes.shape[1]), summary, options)
    return time.perf_counter() - t0, nb.row_values["pearson"][0, :, 0]


def _torch_pass(codes, b):
    import torch

    a_all, b_all = torch.from_numpy(codes[0]), torch.from_numpy(codes[1])
    n = a_all.shape[1]
    s_ab = torch.zeros(n, n)
    c_ab = torch.zeros(n, n)
    s_a, s_aa, s_b, s_bb = (torch.zeros(n) for _ in range(4))
    c_a, c_b = torch.zeros(n), torch.zeros(n)
    for s in range(0, a_all.shape[0], b):
        x, y = a_all[s : s + b], b_all[s : s + b]
        ix, iy = (x > 0).float(), (y > 0).float()
        s_ab += x.T @ y
        c_ab += ix.T @ iy
        s_a += x.sum(0)
        s_aa += (x * x).sum(0)
        s_b += y.sum(0)
        s_bb += (y * y).sum(0)
        c_a += ix.sum(0)
        c_b += iy.sum(0)
    t = float(a_all.shape[0])
    cov = s_ab / t - torch.outer(s_a / t, s_b / t)
    std = torch.outer(
        (s_aa / t - (s_a / t) ** 2).clamp(min=0).sqrt(),
        (s_bb / t - (s_b / t) ** 2).clamp(min=0).sqrt(),
    )
    pearson = torch.where(std > 0, cov / std, torch.zeros(()))
    cosine = torch.nan_to_num(s_ab / torch.outer(s_aa.sqrt(), s_bb.sqrt()))
    union = c_a[:, None] + c_b[None, :] - c_ab
    jaccard = torch.nan_to_num(c_ab / union)
    sufficiency = torch.nan_to_num(c_ab / c_a[:, None])
    necessity = torch.nan_to_num(c_ab / c_b[None, :])
    pa, pb, p11 = c_a[:, None] / t, c_b[None, :] / t, c_ab / t
    mi = torch.zeros(n, n)
    for pxy, px, py in (
        (p11, pa, pb),
        (pa - p11, pa, 1 - pb),
        (pb - p11, 1 - pa, pb),
        (1 - pa - pb + p11, 1 - pa, 1 - pb),
    ):
        mi += torch.nan_to_num(pxy * torch.log(pxy / (px * py)))
    tops = [torch.topk(m, 8, dim=1) for m in (pearson, cosine, jaccard, sufficiency, necessity, mi)]
    tops += [
        torch.topk(m.T, 8, dim=1) for m in (pearson, cosine, jaccard, sufficiency, necessity, mi)
    ]
    return tops[0].values[:, 0].numpy()


def worker_torch(codes: np.ndarray, args) -> tuple[float, np.ndarray]:
    _torch_pass(codes[:, : args.batch], args.batch)  # warm-up
    t0 = time.perf_counter()
    top1 = _torch_pass(codes, args.batch)
    return time.perf_counter() - t0, top1


def run_worker(args) -> None:
    if args.worker == "ours":
        import jax  # noqa: F401  (imports before the baseline)
    else:
        import torch  # noqa: F401
    codes = make_codes(args.tokens, args.n, args.k)
    base = _current_rss_mb()
    seconds, top1 = (worker_ours if args.worker == "ours" else worker_torch)(codes, args)
    np.save(args.result + ".npy", top1)
    Path(args.result).write_text(json.dumps({"seconds": seconds, "peak_mb": _rss_mb() - base}))


# Per-layer L0 of the paper-shape SAEs: an approximation of gpt2-small-res-jb's published L0s
# (rising with depth); the bench's random SAEs are set to fire this often.
GPT2_RES_JB_L0 = (13, 24, 35, 45, 52, 58, 64, 70, 76, 82, 88, 94)


def _matmul_rate(d: int, n: int) -> float:
    """FLOP/s of a plain float32 `[4096, d] x [d, n]` matmul here (jitted, best of 3)."""
    import jax
    import jax.numpy as jnp

    x, w = jnp.ones((4096, d)), jnp.ones((d, n))
    f = jax.jit(lambda x, w: x @ w)
    f(x, w).block_until_ready()
    best = min(_timed(lambda: f(x, w).block_until_ready()) for _ in range(3))
    return 2 * 4096 * d * n / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _paper_source(args):
    """The random model, its random SAEs and the codes cache of the bench's tokens."""
    import jax

    import jaxlens
    from sae.evolution import codes, model_source

    if args.quick:
        config, d_sae, l0 = jaxlens.ModelConfig.tiny(vocab_size=259, n_layers=4), 512, 6
    else:
        config, d_sae, l0 = jaxlens.ModelConfig.gpt2_small(), 24576, GPT2_RES_JB_L0
    model = jaxlens.LoadedModel(config, jaxlens.init_params(jax.random.key(0), config), None)
    ids = 3 + np.frombuffer(model_source.corpus_text(4000).encode("utf-8"), np.uint8)
    windows = 8 if args.quick else args.windows
    tokens = ids[: windows * 128].astype(np.int32).reshape(windows, 128)
    cfgs, params = model_source.random_saes(model, tokens[:16], d_sae=d_sae, l0=l0)
    batch = args.source_batch
    list(model_source.LayerSource(model, tokens[:batch], cfgs, params, batch=batch)())  # compile
    src = model_source.LayerSource(model, tokens, cfgs, params, batch=batch)
    flops = 2 * sum(x.size for x in jax.tree.leaves(model.params)) + 2 * config.n_layers * (
        config.d_model * d_sae
    )
    return codes.CodeCache(src), src.n_tokens, flops, (config.d_model, d_sae)


def paper_shape(args) -> list[str]:
    """`--paper-shape` (module docstring): RESULT lines."""
    from sae.evolution import codes, stats, stream

    cache, n_tokens, flops, (d, n) = _paper_source(args)
    t_source = _timed(lambda: list(cache()))  # model forward + encodes, into the cache
    l0 = np.sum([[m.nnz for m in b.layers] for b in cache()], axis=0) / n_tokens
    summary = stream.first_pass(cache)
    options = stream.PassOptions(measures=stats.TOKEN_MEASURES, top_k=16, accumulate="sparse")
    t_pairs = _timed(lambda: stream.pair_pass(cache, summary, options))
    peak, rate, pairs = _rss_mb(), _matmul_rate(d, n), summary.max.shape[0] - 1
    peer_n = min(args.peer_latents, n)  # one layer pair at the peer's width, the same codes
    two = np.concatenate([codes.to_dense(b)[:2, :, :peer_n] for b in cache()], axis=1)

    def pair_source():
        return (two[:, s : s + args.batch] for s in range(0, two.shape[1], args.batch))

    t_ours = _timed(lambda: stream.pair_pass(pair_source, stream.first_pass(pair_source), options))
    _torch_pass(two[:, : args.batch], args.batch)  # warm-up
    t_peer = _timed(lambda: _torch_pass(two, args.batch))
    hours = [1e7 * t / n_tokens / 3600 for t in (t_source, t_pairs)]
    return [
        f"RESULT evolution_source_tokens_per_s value={n_tokens / t_source:.4g} unit=tok/s "
        f"matmul_fraction={n_tokens * flops / t_source / rate:.3g}",
        f"RESULT evolution_pairs_tokens_per_s value={n_tokens / t_pairs:.4g} unit=tok/s "
        f"layer_pairs={pairs} d_sae={n}",
        f"RESULT evolution_peak_mb value={peak:.4g} unit=MB",
        "RESULT evolution_l0 value=" + ",".join(f"{v:.0f}" for v in l0) + " unit=latents/token",
        f"RESULT evolution_10M_tokens_hours source={hours[0]:.3g} pairs={hours[1]:.3g} unit=h",
        f"RESULT evolution_vs_dense_peer_d{peer_n} ours={t_ours:.4g} peer={t_peer:.4g} unit=s "
        f"ratio={t_peer / t_ours:.3g}",
    ]


def _worker_cmd(args, side: str, n: int, tokens: int, path: Path) -> list[str]:
    """The command line of one side's worker process."""
    cmd = [sys.executable, __file__, "--worker", side, "--n", str(n), "--tokens", str(tokens)]
    cmd += ["--batch", str(args.batch), "--k", str(args.k), "--result", str(path)]
    cmd += ["--accumulate", args.accumulate]
    return cmd + (["--block", str(args.block)] if args.block else [])


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    import jaxlens.runs

    if args.paper_shape:
        _report(jaxlens.runs.RunFolder(args.out, config=vars(args), command=sys.argv),
                paper_shape(args), "SAE evolution at the paper's shape")  # fmt: skip
        return

    sizes = args.sizes or ([1024, 2048] if args.quick else [4096, 16384])
    tokens = args.tokens or (8192 if args.quick else 16384)
    run = jaxlens.runs.RunFolder(
        args.out, config={**vars(args), "sizes": sizes, "tokens": tokens}, command=sys.argv
    )
    rows, results = [], []
    for n in jaxlens.runs.progress(sizes, desc="d_sae", unit="size"):
        row = {"d_sae": n, "tokens": tokens}
        for side in ("ours", "torch"):
            path = Path(run.path) / f"{side}_{n}.json"
            cmd = _worker_cmd(args, side, n, tokens, path)
            subprocess.run(cmd, check=True)
            res = json.loads(path.read_text())
            row[f"{side}_updates_per_s"] = tokens * n * n / res["seconds"]
            row[f"{side}_seconds"] = res["seconds"]
            row[f"{side}_peak_mb"] = res["peak_mb"]
        ours, torch_ = (np.load(Path(run.path) / f"{s}_{n}.json.npy") for s in ("ours", "torch"))
        row["top1_pearson_max_diff"] = float(np.max(np.abs(ours - torch_)))
        rows.append(row)
        run.log(row)
        for name, unit, o, t in (
            ("updates_per_s", "tok*pair/s", row["ours_updates_per_s"], row["torch_updates_per_s"]),
            ("peak_mb", "MB", row["ours_peak_mb"], row["torch_peak_mb"]),
        ):
            ratio = o / t if name == "updates_per_s" else t / max(o, 1e-9)
            results.append(
                f"RESULT evolution_{name}_d{n} ours={o:.4g} peer={t:.4g} "
                f"unit={unit} ratio={ratio:.3g}"
            )
    run.save_json("results.json", rows)
    run.summary(rows)
    _report(run, results, "Pairwise statistics: ours vs dense PyTorch")


def _report(run, lines: list[str], title: str) -> None:
    run.section("RESULT lines", "```\n" + "\n".join(lines) + "\n```")
    run.write_report(title)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
