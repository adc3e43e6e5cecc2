"""Benchmark: SAE training tokens/s, ours against SAELens and a plain PyTorch SAE.

All implementations train on the same cached activations (synthetic: sparse codes over a random
dictionary, written once as `.npy` shards and read back through `sae.CachedActivations`) with
the same sizes (full run: d_in 768, 16x expansion, k 32, batch 4096), fp32 on this machine's
CPUs, one after the other in the same process. The peers: SAELens's training SAEs stepped as
`SAETrainer._train_step` steps them (its losses, dead-latent bookkeeping, backward, grad-norm
clip, Adam), and a plain dense PyTorch SAE per architecture. A step's time is the wall time
between consecutive steps; the first `warmup` steps (compilation) are left out and the best
remaining step counts, since background load on a shared machine only ever adds time. Every
measurement runs in its own process (no framework's thread pool slows another's), and the
implementations alternate over `--rounds` rounds, each keeping its best.

    python scripts/bench_sae.py            # full sizes, 2 rounds: ~20 minutes on 2 cores
    python scripts/bench_sae.py --quick    # topk and relu at d_in 256, 8x, k 16, batch 1024

Prints one `RESULT` line per architecture, `ratio = ours / fastest peer` in tokens/s, and one
with the fraction of the machine's matmul peak (measured here as the best fp32 FLOP/s of a jitted
[B, D] x [D, N] matmul) each reaches, counting the dense-equivalent work of a step,
12 * B * D * N FLOPs (so a sparse implementation can pass 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

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


def matmul_peak(b: int, d: int, n: int) -> float:
    """Best fp32 FLOP/s of a jitted [b, d] x [d, n] matmul."""
    x = jnp.ones((b, d), jnp.float32)
    w = jnp.ones((d, n), jnp.float32)
    f = jax.jit(lambda x, w: x @ w)
    f(x, w).block_until_ready()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        f(x, w).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * b * d * n / best


def best_step(times: list[float], warmup: int) -> float:
    """Best (shortest) step time after the warm-up: background load only ever adds time."""
    steps = [b - a for a, b in zip(times[warmup:], times[warmup + 1 :], strict=False)]
    return min(steps)


def bench_ours(arch: str, source, args) -> float:
    """`sae.fit` on the cached activations; a callback after every step times it."""
    config = _config(arch, args)
    times: list[float] = []
    options = sae.FitOptions(log_every=1, init_sample_size=args.batch)
    sae.fit(
        source,
        config,
        key=jax.random.key(0),
        steps=args.warmup + args.steps,
        batch_size=args.batch,
        lr=1e-4,
        options=options,
        callback=lambda done, stats: times.append(time.perf_counter()),
    )
    return args.batch / best_step(times, args.warmup - 1)


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
    if args.worker == "peak":
        value = matmul_peak(args.batch, args.d_in, args.d_in * args.expansion)
    else:
        if args.worker == "saelens" and SAELENS_DIR not in sys.path:
            sys.path.append(SAELENS_DIR)  # after the main environment: its packages win
        source = sae.CachedActivations(args.cache, key=jax.random.key(0))
        value = IMPLS[args.worker](args.arch, source, args)
    print(json.dumps({"value": value}))


def measure(what: str, arch: str, cache: str, quick: bool) -> float:
    """Run one worker in a fresh process, so no framework's thread pool slows another's."""
    cmd = [sys.executable, __file__, "--worker", what, "--arch", arch, "--cache", cache]
    out = subprocess.run(cmd + (["--quick"] if quick else []), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {what} {arch} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["value"]


def saelens_available() -> bool:
    probe = f"import sys; sys.path.append({SAELENS_DIR!r}); import sae_lens"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, help="default: all (quick: topk relu)")
    parser.add_argument("--no-saelens", action="store_true", help="skip the SAELens peer")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default: 2, quick: 1)")
    parser.add_argument("--worker", choices=[*IMPLS, "peak"], help=argparse.SUPPRESS)
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
    n = args.d_in * args.expansion
    peers = ["torch"]
    if not args.no_saelens:
        if saelens_available():
            peers.append("saelens")
        else:
            print("sae-lens not installed (bash .ci/peers/sae.sh): SAELens peer skipped")
    dense_flops = 12 * args.batch * args.d_in * n  # fwd 2 matmuls + bwd 4, per step
    results: list[str] = []
    speeds: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_shards(tmp, args.d_in, (args.warmup + args.steps + 1) * args.batch)
        peak = measure("peak", "-", tmp, args.quick)
        print(
            f"sizes: d_in={args.d_in} d_sae={n} k={args.k} batch={args.batch} steps="
            f"{args.steps} (+{args.warmup} untimed); matmul peak {peak / 1e9:.1f} GFLOP/s fp32",
            flush=True,
        )
        for arch in args.archs:
            speed = {}
            for round_ in range(args.rounds):  # alternate, keep each one's best round
                peak = max(peak, measure("peak", "-", tmp, args.quick))
                for impl in ["ours", *peers]:
                    value = measure(impl, arch, tmp, args.quick)
                    speed[impl] = max(speed.get(impl, 0.0), value)
                    frac = value / args.batch * dense_flops / peak
                    print(
                        f"{arch}: {impl} {value:.0f} tokens/s ({frac:.2f} of peak), round "
                        f"{round_ + 1}",
                        flush=True,
                    )
            speeds[arch] = speed
    print(f"matmul peak (best of all measurements): {peak / 1e9:.1f} GFLOP/s fp32")
    for arch, speed in speeds.items():
        best = max(peers, key=speed.get)
        ours, peer = speed["ours"], speed[best]
        results.append(
            f"RESULT sae_train_{arch}_vs_{best} ours={ours:.1f} peer={peer:.1f} "
            f"unit=tokens/s ratio={ours / peer:.2f}"
        )
        f_ours, f_peer = (v / args.batch * dense_flops / peak for v in (ours, peer))
        results.append(
            f"RESULT sae_train_{arch}_peak_fraction ours={f_ours:.3f} peer={f_peer:.3f} "
            f"unit=fraction_of_fp32_matmul_peak ratio={f_ours / f_peer:.2f}"
        )
    print("\n".join(results))


if __name__ == "__main__":
    main()
