"""Prefill throughput and peak memory: `jaxlens.forward` vs HF transformers (PyTorch, CPU).

Same config, random weights, same batch, same run. Each measurement runs in its own subprocess
so peak RSS (VmHWM, minus the RSS after imports) belongs to one framework. Also measured here:
the machine's fp32 matmul peak for JAX and for torch (the yardstick for achieved FLOP/s), and the
compile time of the layer scan at several depths (it should not grow with depth).

    python scripts/bench_forward.py            # full: 125M (B8 x T256) and 1B-shaped (B2 x T256)
    python scripts/bench_forward.py --quick    # under a minute: 125M at B2 x T128

Ends with `RESULT name ours=.. peer=.. unit=.. ratio=..` lines, ratio > 1 meaning jaxlens is
better. Matmul precision is JAX's default (the tests force "highest"); torch uses 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "125m": dict(
        vocab_size=32000, d_model=768, n_layers=12, n_heads=12, n_kv_heads=4, head_dim=64, d_ff=2048
    ),
    "1b": dict(
        vocab_size=32000,
        d_model=2048,
        n_layers=16,
        n_heads=32,
        n_kv_heads=8,
        head_dim=64,
        d_ff=8192,
    ),
}


def _rss(key: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    """Restarts VmHWM (Linux clear_refs 5), so the next peak covers the timed runs only."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def forward_flops(c: dict, batch: int, seq: int) -> float:
    """Matmul FLOPs of one prefill: projections, MLP, LM head, and full (unmasked) attention."""
    d, h, k, e, f, v, n = (
        c[x]
        for x in ("d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff", "vocab_size", "n_layers")
    )
    per_token = n * (d * h * e * 2 + d * k * e * 2 + 3 * d * f) + d * v
    attention = n * 2 * 2 * seq * seq * h * e * batch
    return 2.0 * per_token * batch * seq + attention


def _time(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def worker_ours(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxlens import ModelConfig, forward, init_params

    base = _rss()
    config = ModelConfig(arch="llama", **CONFIGS[args.cfg])
    params = jax.block_until_ready(init_params(jax.random.key(0), config))
    tokens = jnp.asarray(
        np.random.default_rng(0).integers(0, 32000, (args.batch, args.seq)), jnp.int32
    )
    mask = jnp.ones_like(tokens)
    t0 = time.perf_counter()
    jax.block_until_ready(forward(params, tokens, config=config, attention_mask=mask).logits)
    first = time.perf_counter() - t0
    peak_all = _rss("VmHWM") - base  # includes XLA compilation
    _reset_peak()
    times = _time(
        lambda: jax.block_until_ready(
            forward(params, tokens, config=config, attention_mask=mask).logits
        ),
        args.reps,
    )
    return dict(times=times, first_call=first, peak=_rss("VmHWM") - base, peak_all=peak_all)


def worker_hf(args) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(2)
    base = _rss()
    c = CONFIGS[args.cfg]
    cfg = LlamaConfig(
        vocab_size=c["vocab_size"],
        hidden_size=c["d_model"],
        num_hidden_layers=c["n_layers"],
        num_attention_heads=c["n_heads"],
        num_key_value_heads=c["n_kv_heads"],
        head_dim=c["head_dim"],
        intermediate_size=c["d_ff"],
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(cfg).eval()
    tokens = torch.randint(0, 32000, (args.batch, args.seq))
    mask = torch.ones_like(tokens)
    with torch.inference_mode():
        model(input_ids=tokens, attention_mask=mask)
        peak_all = _rss("VmHWM") - base
        _reset_peak()
        times = _time(lambda: model(input_ids=tokens, attention_mask=mask), args.reps)
    return dict(times=times, peak=_rss("VmHWM") - base, peak_all=peak_all)


def worker_peak(args) -> dict:
    """fp32 matmul FLOP/s: 4096x768 @ 768x12288 (DESIGN.md section 6) in JAX and torch."""
    import jax
    import jax.numpy as jnp
    import torch

    torch.set_num_threads(2)
    m, k, n = 4096, 768, 12288
    a = jax.random.normal(jax.random.key(0), (m, k))
    b = jax.random.normal(jax.random.key(1), (k, n))
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))
    jt = min(_time(lambda: jax.block_until_ready(mm(a, b)), args.reps))
    ta, tb = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(ta, tb)
    tt = min(_time(lambda: torch.matmul(ta, tb), args.reps))
    return dict(jax=2 * m * k * n / jt, torch=2 * m * k * n / tt)


def worker_compile(args) -> dict:
    """Lower + compile time of the jitted forward at several depths (shapes only, no weights)."""
    import jax
    import jax.numpy as jnp

    from jaxlens import ModelConfig, forward
    from jaxlens.model import param_shapes

    def compile_time(depth: int) -> float:
        config = ModelConfig(arch="llama", **{**CONFIGS["125m"], "n_layers": depth})
        tok = jax.ShapeDtypeStruct((args.batch, args.seq), jnp.int32)
        fn = jax.jit(lambda p, t, m: forward(p, t, config=config, attention_mask=m).logits)
        t0 = time.perf_counter()
        fn.lower(param_shapes(config), tok, tok).compile()
        return time.perf_counter() - t0

    compile_time(2)  # one-time start-up (backend, tracing caches) is not the model's cost
    return {depth: compile_time(depth) for depth in args.depths}


def _run_worker(kind: str, **kw) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind]
    for key, value in kw.items():
        cmd += [f"--{key}"] + ([str(v) for v in value] if isinstance(value, list) else [str(value)])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"worker {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _result(name: str, ours: float, peer: float, unit: str, ratio: float) -> str:
    return f"RESULT {name} ours={ours:.4g} peer={peer:.4g} unit={unit} ratio={ratio:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", choices=["ours", "hf", "peak", "compile"])
    p.add_argument("--cfg", default="125m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--depths", type=int, nargs="+", default=[4, 12, 24])
    args = p.parse_args()
    if args.worker:
        fn = {"ours": worker_ours, "hf": worker_hf, "peak": worker_peak, "compile": worker_compile}[
            args.worker
        ]
        print(json.dumps(fn(args)))
        return

    # (config, batch, seq, reps per worker); workers alternate for `rounds` rounds and the best
    # time counts, which keeps other load on a shared machine from deciding the ratio.
    runs = [("125m", 2, 128, 2)] if args.quick else [("125m", 8, 256, 3), ("1b", 2, 256, 2)]
    rounds = 1 if args.quick else 2
    peak = _run_worker("peak", reps=2 if args.quick else 5)
    print(
        f"matmul peak fp32: jax {peak['jax'] / 1e9:.1f} GFLOP/s, "
        f"torch {peak['torch'] / 1e9:.1f} GFLOP/s",
        flush=True,
    )
    results = []
    for cfg, batch, seq, reps in runs:
        shape = dict(cfg=cfg, batch=batch, seq=seq, reps=reps)
        ours, hf = {"times": []}, {"times": []}
        for _ in range(rounds):
            for name, acc in (("ours", ours), ("hf", hf)):
                got = _run_worker(name, **shape)
                acc.update({**got, "times": acc["times"] + got["times"]})
        flops = forward_flops(CONFIGS[cfg], batch, seq)
        t_ours, t_hf = min(ours["times"]), min(hf["times"])
        tps_ours, tps_hf = batch * seq / t_ours, batch * seq / t_hf
        mfu_ours, mfu_hf = flops / t_ours / peak["jax"], flops / t_hf / peak["torch"]
        print(
            f"{cfg} B{batch}xT{seq}: {flops / 1e9:.0f} GFLOP; ours {t_ours:.2f}s "
            f"(first call {ours['first_call']:.1f}s, {mfu_ours:.0%} of jax peak), "
            f"hf {t_hf:.2f}s ({mfu_hf:.0%} of torch peak); median ours "
            f"{statistics.median(ours['times']):.2f}s hf {statistics.median(hf['times']):.2f}s; "
            f"peak RSS incl. first call: ours {ours['peak_all'] / 2**20:.0f} MiB, "
            f"hf {hf['peak_all'] / 2**20:.0f} MiB",
            flush=True,
        )
        tag = f"forward_{cfg}_B{batch}xT{seq}"
        results += [
            _result(f"{tag}_tokens_per_s", tps_ours, tps_hf, "tokens/s", tps_ours / tps_hf),
            _result(
                f"{tag}_peak_rss",
                ours["peak"] / 2**20,
                hf["peak"] / 2**20,
                "MiB",
                hf["peak"] / ours["peak"],
            ),
            _result(f"{tag}_matmul_peak_fraction", mfu_ours, mfu_hf, "fraction", mfu_ours / mfu_hf),
        ]
    depths = [4, 12] if args.quick else [4, 12, 24]
    comp = _run_worker("compile", batch=8, seq=256, depths=depths)
    comp = {int(k): v for k, v in comp.items()}
    print("compile time (s) by depth: " + ", ".join(f"L{d}: {t:.2f}" for d, t in comp.items()))
    deep, shallow = max(depths), min(depths)
    results.append(
        _result(
            f"compile_125m_L{deep}_vs_L{shallow}",
            comp[deep],
            comp[shallow],
            "s",
            comp[shallow] / comp[deep],
        )
    )
    print("\n".join(results))


if __name__ == "__main__":
    main()
