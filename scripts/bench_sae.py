"""Benchmark: SAE training tokens/s, ours against SAELens, plain PyTorch and the matmul bound.

All implementations train on the same cached activations (synthetic: sparse codes over a random
dictionary, written once as `.npy` shards and read back through `sae.CachedActivations`) with
the same sizes (full run: d_in 768, 16x expansion, k 32, batch 4096), fp32 on this machine's
CPUs. The peers: SAELens's training SAEs stepped as `SAETrainer._train_step` steps them (its
losses, dead-latent bookkeeping, backward, grad-norm clip, Adam), and a plain dense PyTorch SAE
per architecture. A step's time is the wall time between consecutive steps; the first `warmup`
steps (compilation) are left out and the best remaining step counts, since background load on a
shared machine only ever adds time. Every measurement runs in its own process (no framework's
thread pool slows another's), and the implementations alternate over `--rounds` rounds, each
keeping its best.

The bound: a TopK step cannot beat one dense encoder matmul `[B, D] x [D, N]` (every
pre-activation competes for the top k; everything else is sparse). Our worker times that matmul
between its own training steps, in the same process and under the same load, so `fraction =
matmul time / step time` (ours' tokens/s over the bound's) is comparable across loads even where
single tokens/s figures are not. For the dense architectures (relu, jumprelu) the same matmul is
1/5 of their work, so their fraction is at most ~0.2.

    python scripts/bench_sae.py            # full sizes, 2 rounds: ~20 minutes on 2 quiet cores
    python scripts/bench_sae.py --quick    # topk and relu at d_in 256, 8x, k 16, batch 1024

Prints, per architecture, `RESULT sae_train_<arch>_vs_<peer>` (tokens/s, ratio = ours / the
fastest peer) and `RESULT sae_train_<arch>_vs_bound` (ours and the matmul bound in tokens/s,
ratio = the fraction of the bound), and writes a run folder (`runs/bench_sae[_quick]`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import _bench
import jax
import numpy as np

import jaxlens.runs
import sae

SAELENS_DIR = os.environ.get("SAE_PEERS_DIR", "/opt/jaxlens-peers/saelens")
ARCHS = ("topk", "batchtopk", "relu", "jumprelu")


def synthetic_shards(directory: str, d_in: int, n_tokens: int, seed: int = 0) -> None:
    """Cache `n_tokens` activations: ~20 of 4 * d_in random directions active per token."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(4 * d_in, d_in)).astype(np.float32) / np.sqrt(d_in)

    def batches():
        for _ in range(0, n_tokens, 4096):
            on = rng.random((4096, basis.shape[0])) < 20 / basis.shape[0]
            yield ((rng.exponential(size=on.shape) * on).astype(np.float32) @ basis) + 0.1

    sae.write_cached_activations(directory, batches(), shard_tokens=1 << 15)


def best_step(times: list[float], warmup: int) -> float:
    """Best (shortest) step time after the warm-up: background load only ever adds time."""
    steps = [b - a for a, b in zip(times[warmup:], times[warmup + 1 :], strict=False)]
    return min(steps)


def bench_ours(arch: str, source, args) -> dict[str, float]:
    """`sae.fit` on the cached activations; a callback after every step times it, and times
    the bound (one dense encoder-sized matmul) right there, under the same load."""
    config = _config(arch, args)
    keys = jax.random.split(jax.random.key(1))
    x = jax.random.normal(keys[0], (args.batch, args.d_in))
    w = jax.random.normal(keys[1], (args.d_in, config.d_sae))
    matmul = jax.jit(lambda x, w: x @ w)
    matmul(x, w).block_until_ready()
    marks: list[tuple[float, float]] = []  # (start, end) of each callback
    matmul_times: list[float] = []

    def callback(done, stats):
        start = time.perf_counter()
        matmul(x, w).block_until_ready()
        matmul_times.append(time.perf_counter() - start)
        marks.append((start, time.perf_counter()))

    options = sae.FitOptions(log_every=1, init_sample_size=args.batch)
    sae.fit(
        source,
        config,
        key=jax.random.key(0),
        steps=args.warmup + args.steps,
        batch_size=args.batch,
        lr=1e-4,
        options=options,
        callback=callback,
    )
    steps = [
        b[0] - a[1] for a, b in zip(marks[args.warmup - 1 : -1], marks[args.warmup :], strict=True)
    ]
    return {"value": args.batch / min(steps), "bound": args.batch / min(matmul_times)}


def _config(arch: str, args) -> sae.SAEConfig:
    k = args.k if arch in ("topk", "batchtopk") else None
    return sae.SAEConfig(d_in=args.d_in, d_sae=args.d_in * args.expansion, architecture=arch, k=k)


def bench_torch(arch: str, source, args) -> float:
    """A plain dense PyTorch SAE of the same architecture (Adam, same losses)."""
    import torch

    d, n, k = args.d_in, args.d_in * args.expansion, args.k
    w_dec = torch.randn(n, d)
    w_dec /= w_dec.norm(dim=-1, keepdim=True)
    params = {
        "W_enc": w_dec.T.clone().requires_grad_(),
        "b_enc": torch.zeros(n, requires_grad=True),
        "W_dec": w_dec.requires_grad_(),
        "b_dec": torch.zeros(d, requires_grad=True),
        "threshold": torch.full((n,), 0.05, requires_grad=True),
    }
    opt = torch.optim.Adam(list(params.values()), lr=1e-4)

    class Jump(torch.autograd.Function):
        @staticmethod
        def forward(ctx, pre, thr):
            ctx.save_for_backward(pre, thr)
            return pre * (pre > thr), (pre > thr).float()

        @staticmethod
        def backward(ctx, g, g_step):
            pre, thr = ctx.saved_tensors
            rect = ((pre - thr).abs() < 0.025).float() / 0.05
            return g * (pre > thr), (-(thr * g) - g_step).mul(rect).sum(0)

    def loss_fn(x):
        p = params
        pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
        extra = 0.0
        if arch == "topk":
            vals, idx = pre.topk(k, dim=-1)
            acts = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
        elif arch == "batchtopk":
            flat = pre.relu().flatten()
            vals, idx = flat.topk(k * x.shape[0])
            acts = torch.zeros_like(flat).scatter(-1, idx, vals).view_as(pre)
        elif arch == "relu":
            acts = pre.relu()
            extra = (acts * p["W_dec"].norm(dim=-1)).sum(-1).mean()
        else:
            acts, on = Jump.apply(pre, p["threshold"])
            extra = 1e-3 * on.sum(-1).mean()
        x_hat = acts @ p["W_dec"] + p["b_dec"]
        return (x_hat - x).pow(2).sum(-1).mean() + extra

    times = [time.perf_counter()]
    for i, batch in enumerate(source.iter_batches(args.batch)):
        if i == args.warmup + args.steps:
            break
        opt.zero_grad()
        loss_fn(torch.from_numpy(batch)).backward()
        opt.step()
        if arch in ("topk", "batchtopk"):
            with torch.no_grad():
                params["W_dec"] /= params["W_dec"].norm(dim=-1, keepdim=True)
        times.append(time.perf_counter())
    return args.batch / best_step(times, args.warmup)


def bench_saelens(arch: str, source, args) -> float:
    """SAELens's training SAE, stepped as `SAETrainer._train_step` does (forward pass with its
    losses, dead-latent bookkeeping, backward, grad-norm clip, Adam, zero_grad)."""
    import sae_lens
    import torch
    from sae_lens.saes.sae import TrainStepInput

    d, n = args.d_in, args.d_in * args.expansion
    name = {"topk": "TopK", "batchtopk": "BatchTopK", "relu": "Standard", "jumprelu": "JumpReLU"}
    kwargs = {"k": args.k} if arch in ("topk", "batchtopk") else {}
    cfg = getattr(sae_lens, name[arch] + "TrainingSAEConfig")(d_in=d, d_sae=n, **kwargs)
    model = getattr(sae_lens, name[arch] + "TrainingSAE")(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    coefficients = {
        key: getattr(value, "value", value) for key, value in model.get_coefficients().items()
    }
    since_fired = torch.zeros(n)
    times = [time.perf_counter()]
    for i, batch in enumerate(source.iter_batches(args.batch)):
        if i == args.warmup + args.steps:
            break
        out = model.training_forward_pass(
            TrainStepInput(
                sae_in=torch.from_numpy(batch),
                coefficients=coefficients,
                dead_neuron_mask=since_fired > 1000,
                n_training_steps=i,
                is_logging_step=False,
            )
        )
        with torch.no_grad():
            fired = out.feature_acts.bool().float().sum(-2).bool()
            since_fired += 1
            since_fired[fired] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter())
    return args.batch / best_step(times, args.warmup)


SIZES = {
    "quick": dict(d_in=256, expansion=8, k=16, batch=1024, steps=3, warmup=2),
    "full": dict(d_in=768, expansion=16, k=32, batch=4096, steps=5, warmup=2),
}
IMPLS = {"ours": bench_ours, "torch": bench_torch, "saelens": bench_saelens}


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process; prints its result as JSON on the last line."""
    if args.worker == "saelens" and SAELENS_DIR not in sys.path:
        sys.path.append(SAELENS_DIR)  # after the main environment: its packages win
    source = sae.CachedActivations(args.cache, key=jax.random.key(0))
    out = IMPLS[args.worker](args.arch, source, args)
    print(json.dumps(out if isinstance(out, dict) else {"value": out}))


def measure(what: str, arch: str, cache: str, quick: bool) -> dict[str, float]:
    """Run one worker in a fresh process, so no framework's thread pool slows another's."""
    cmd = [sys.executable, __file__, "--worker", what, "--arch", arch, "--cache", cache]
    out = subprocess.run(cmd + (["--quick"] if quick else []), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {what} {arch} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def saelens_available() -> bool:
    probe = f"import sys; sys.path.append({SAELENS_DIR!r}); import sae_lens"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def choose_peers(args) -> list[str]:
    """Plain PyTorch always; SAELens unless `--no-saelens` or it is not installed."""
    peers = ["torch"]
    if not args.no_saelens:
        if saelens_available():
            peers.append("saelens")
        else:
            print("sae-lens not installed (bash .ci/peers/sae.sh): SAELens peer skipped")
    return peers


def results(speeds, bounds, peers) -> list[_bench.Result]:
    """Per architecture: ours against the fastest peer, and against the matmul bound."""
    out = []
    for arch, speed in speeds.items():
        best = max(peers, key=speed.get)
        out.append(
            _bench.Result(f"sae_train_{arch}_vs_{best}", speed["ours"], speed[best], "tokens/s")
        )
        out.append(
            _bench.Result(f"sae_train_{arch}_vs_bound", speed["ours"], bounds[arch], "tokens/s")
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _bench.add_run_args(parser, "bench_sae")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, help="default: all (quick: topk relu)")
    parser.add_argument("--no-saelens", action="store_true", help="skip the SAELens peer")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default: 2, quick: 1)")
    parser.add_argument("--worker", choices=list(IMPLS), help=argparse.SUPPRESS)
    parser.add_argument("--arch", default="topk", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for key, value in SIZES["quick" if args.quick else "full"].items():
        setattr(args, key, value)
    if args.worker:
        worker(args)
        return
    args.archs = args.archs or (["topk", "relu"] if args.quick else list(ARCHS))
    args.rounds = args.rounds or (1 if args.quick else 2)
    run = _bench.open_run("bench_sae", args)
    peers = choose_peers(args)
    load_before = os.getloadavg()
    print(
        f"sizes: d_in={args.d_in} d_sae={args.d_in * args.expansion} k={args.k} "
        f"batch={args.batch} steps={args.steps} (+{args.warmup} untimed); load average "
        f"{load_before[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    speeds: dict[str, dict[str, float]] = {}
    bounds: dict[str, float] = {}
    jobs = [(arch, r, impl) for arch in args.archs for r in range(args.rounds)
            for impl in ["ours", *peers]]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_shards(tmp, args.d_in, (args.warmup + args.steps + 1) * args.batch)
        for arch, round_, impl in jaxlens.runs.progress(jobs, desc="measurements", unit="run"):
            out = measure(impl, arch, tmp, args.quick)
            speed = speeds.setdefault(arch, {})
            speed[impl] = max(speed.get(impl, 0.0), out["value"])  # alternate, keep the best
            line = f"{arch}: {impl} {out['value']:.0f} tokens/s, round {round_ + 1}"
            if "bound" in out:
                bounds[arch] = max(bounds.get(arch, 0.0), out["bound"])
                line += f" (bound {out['bound']:.0f}: {out['value'] / out['bound']:.2f})"
            print(line, flush=True)
    load_after = os.getloadavg()
    print(f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after", flush=True)
    extra = {"speeds": speeds, "bounds": bounds, "load_average": [load_before, load_after]}
    _bench.finish(run, results(speeds, bounds, peers), "SAE training throughput", extra)


if __name__ == "__main__":
    main()
