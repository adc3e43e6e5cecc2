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
        measures=stats.TOKEN_MEASURES, top_k=8, block=args.block, sparse_cap=args.k
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


def main() -> None:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return
    import jaxlens.runs

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
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                side,
                "--n",
                str(n),
                "--tokens",
                str(tokens),
                "--batch",
                str(args.batch),
                "--k",
                str(args.k),
                "--result",
                str(path),
            ] + (["--block", str(args.block)] if args.block else [])
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
    run.section("RESULT lines", "```\n" + "\n".join(results) + "\n```")
    run.write_report("Pairwise statistics: ours vs dense PyTorch")
    print("\n".join(results))


if __name__ == "__main__":
    main()
