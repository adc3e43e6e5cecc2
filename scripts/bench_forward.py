"""Prefill throughput and peak memory: `jaxlens.forward` vs HF transformers (PyTorch, CPU).

Same Llama config, random weights, same batch, same run. Each measurement runs in its own
subprocess, so peak RSS belongs to one framework: `peak` is the high-water RSS during the timed
calls (Linux VmHWM, reset after the first call) minus the RSS after imports, i.e. weights plus
working memory; the first call's peak (XLA compilation included) is printed too. Each worker
also times an fp32 matmul (4096x768 @ 768x12288, an SAE encoder's shape) in its own framework, the
yardstick for achieved FLOP/s. Workers alternate for several rounds and the best time counts,
so background load on a shared machine does not decide the ratio. Last, the compile time of the
jitted forward at several depths (the layer scan should make it independent of depth).

    python3 scripts/bench_forward.py           # full: 125M (B8 x T256) and 1B-shaped (B2 x T256)
    python3 scripts/bench_forward.py --quick   # under a minute: 125M at B2 x T128
    python3 scripts/bench_forward.py --dtype bf16   # weights and activations in bfloat16

Ends with `RESULT name ours=.. peer=.. unit=.. ratio=..` lines, ratio > 1 meaning jaxlens is
better, and writes a run folder (`--run`, default runs/bench_forward[_quick]). JAX runs at its
default matmul precision (the tests force "highest"); torch, 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _bench

CONFIGS = {
    "125m": dict(vocab_size=32000, d_model=768, n_layers=12, n_heads=12, n_kv_heads=4,
                 head_dim=64, d_ff=2048),
    "1b": dict(vocab_size=32000, d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8,
               head_dim=64, d_ff=8192),
}  # fmt: skip
MATMUL = (4096, 768, 12288)


def forward_flops(c: dict, batch: int, seq: int) -> float:
    """Matmul FLOPs of one prefill: projections, MLP, LM head, full (unmasked) attention."""
    d, h, k, e, f, v, n = (c[x] for x in ("d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff",
                                          "vocab_size", "n_layers"))  # fmt: skip
    per_token = n * (d * h * e * 2 + d * k * e * 2 + 3 * d * f) + d * v
    attention = n * 2 * 2 * seq * seq * h * e * batch
    return 2.0 * per_token * batch * seq + attention


def _measure(call, matmul, reps: int, base: int) -> dict:
    first = _bench.call_seconds(call, 1)[0]
    peak_first = _bench.rss_bytes("VmHWM") - base
    _bench.reset_peak_rss()
    times = _bench.call_seconds(call, reps)
    peak = _bench.rss_bytes("VmHWM") - base
    return dict(
        times=times,
        first=first,
        peak=peak,
        peak_first=peak_first,
        matmul=2 * MATMUL[0] * MATMUL[1] * MATMUL[2] / min(_bench.call_seconds(matmul, reps + 2)),
    )


def worker_ours(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxlens import ModelConfig, forward
    from jaxlens.params import param_shapes

    base = _bench.rss_bytes()
    config = ModelConfig(
        arch="llama", **CONFIGS[args.cfg], param_dtype=args.dtype, dtype=args.dtype
    )
    rng = np.random.default_rng(0)  # numpy init: one leaf at a time, in the weights' dtype
    params = jax.tree.map(
        lambda s: jax.device_put(
            (rng.standard_normal(s.shape, np.float32) * np.float32(0.02)).astype(s.dtype)
        ),
        param_shapes(config),
    )
    tokens = jnp.asarray(rng.integers(0, 32000, (args.batch, args.seq)), jnp.int32)
    mask = jnp.ones_like(tokens)
    a = jax.random.normal(jax.random.key(0), MATMUL[:2])
    b = jax.random.normal(jax.random.key(1), MATMUL[1:])
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))
    return _measure(
        lambda: jax.block_until_ready(
            forward(params, tokens, config=config, attention_mask=mask).logits),
        lambda: jax.block_until_ready(mm(a, b)), args.reps, base)  # fmt: skip


def worker_hf(args) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(2)
    base = _bench.rss_bytes()
    c = CONFIGS[args.cfg]
    cfg = LlamaConfig(
        vocab_size=c["vocab_size"], hidden_size=c["d_model"], num_hidden_layers=c["n_layers"],
        num_attention_heads=c["n_heads"], num_key_value_heads=c["n_kv_heads"],
        head_dim=c["head_dim"], intermediate_size=c["d_ff"], attn_implementation="sdpa",
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).to(getattr(torch, args.dtype)).eval()
    tokens = torch.randint(0, 32000, (args.batch, args.seq))
    mask = torch.ones_like(tokens)
    a, b = torch.randn(*MATMUL[:2]), torch.randn(*MATMUL[1:])
    torch.matmul(a, b)
    with torch.inference_mode():
        return _measure(
            lambda: model(input_ids=tokens, attention_mask=mask),
            lambda: torch.matmul(a, b),
            args.reps,
            base,
        )


def worker_compile(args) -> dict:
    """Lower + compile time of the jitted forward at several depths (shapes only, no weights)."""
    import jax
    import jax.numpy as jnp

    from jaxlens import ModelConfig, forward
    from jaxlens.params import param_shapes

    def compile_time(depth: int) -> float:
        config = ModelConfig(arch="llama", **{**CONFIGS["125m"], "n_layers": depth},
                             param_dtype=args.dtype, dtype=args.dtype)  # fmt: skip
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
        cmd += [f"--{key}"] + [str(v) for v in (value if isinstance(value, list) else [value])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"worker {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _best(runs: list[dict]) -> dict:
    """Fastest forward and matmul over rounds; memory of the round with the fastest forward."""
    fastest = min(runs, key=lambda r: min(r["times"]))
    return {
        **fastest,
        "time": min(fastest["times"]),
        "matmul": max(r["matmul"] for r in runs),
        "all_times": [t for r in runs for t in r["times"]],
    }


def bench_config(
    cfg: str, batch: int, seq: int, reps: int, rounds: int, dtype: str
) -> list[_bench.Result]:
    shape = dict(cfg=cfg, batch=batch, seq=seq, reps=reps, dtype=dtype)
    runs: dict[str, list[dict]] = {"ours": [], "hf": []}
    for _ in _bench_progress(range(rounds), f"{cfg} rounds"):
        for name in runs:
            runs[name].append(_run_worker(name, **shape))
    ours, hf = _best(runs["ours"]), _best(runs["hf"])
    flops = forward_flops(CONFIGS[cfg], batch, seq)
    frac = {n: flops / r["time"] / r["matmul"] for n, r in (("ours", ours), ("hf", hf))}
    for name, r in (("ours", ours), ("hf", hf)):
        print(f"  {name}: best {r['time']:.2f}s of {[round(t, 2) for t in r['all_times']]}, "
              f"{flops / r['time'] / 1e9:.0f} GFLOP/s = {frac[name]:.0%} of its matmul peak "
              f"{r['matmul'] / 1e9:.0f} GFLOP/s; first call {r['first']:.1f}s; peak RSS "
              f"{r['peak'] / 2**20:.0f} MiB (first call {r['peak_first'] / 2**20:.0f} MiB)",
              flush=True)  # fmt: skip
    tps = {n: batch * seq / r["time"] for n, r in (("ours", ours), ("hf", hf))}
    tag = f"forward_{cfg}_B{batch}xT{seq}" + ("" if dtype == "float32" else f"_{dtype}")
    return [
        _bench.Result(f"{tag}_tokens_per_s", tps["ours"], tps["hf"], "tokens/s"),
        _bench.Result(f"{tag}_peak_rss", ours["peak"] / 2**20, hf["peak"] / 2**20, "MiB",
                      higher_is_better=False),
        _bench.Result(f"{tag}_matmul_peak_fraction", frac["ours"], frac["hf"], "fraction"),
    ]  # fmt: skip


def _bench_progress(iterable, desc: str):
    from jaxlens.runs import progress

    return progress(iterable, desc=desc, unit="round")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _bench.add_run_args(p, "bench_forward")
    p.add_argument(
        "--dtype", default="float32", help="weights and activations, any spelling (fp32, bf16)"
    )
    p.add_argument("--worker", choices=["ours", "hf", "compile"], help=argparse.SUPPRESS)
    p.add_argument("--cfg", default="125m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--depths", type=int, nargs="+", default=[4, 12, 24])
    args = p.parse_args()
    from jaxlens import canonical_dtype

    args.dtype = canonical_dtype(args.dtype, name="--dtype")
    if args.worker:
        fn = {"ours": worker_ours, "hf": worker_hf, "compile": worker_compile}[args.worker]
        print(json.dumps(fn(args)))
        return
    # (config, batch, seq, timed calls per worker, rounds of alternating workers)
    runs = (
        [("125m", 2, 128, 2, 1)] if args.quick else [("125m", 8, 256, 3, 4), ("1b", 2, 256, 2, 2)]
    )
    run = _bench.open_run("bench_forward", args)
    results = []
    for cfg, batch, seq, reps, rounds in runs:
        gflop = forward_flops(CONFIGS[cfg], batch, seq) / 1e9
        print(f"{cfg} B{batch} x T{seq}: {gflop:.0f} GFLOP per forward", flush=True)
        results += bench_config(cfg, batch, seq, reps, rounds, args.dtype)
    depths = [4, 12] if args.quick else [4, 12, 24]
    comp = _run_worker("compile", batch=8, seq=256, depths=depths, dtype=args.dtype)
    comp = {int(k): v for k, v in comp.items()}
    print(
        "compile (lower + XLA) of the 125M forward, by depth: "
        + ", ".join(f"L{d} {t:.2f}s" for d, t in comp.items())
    )
    deep, shallow = max(depths), min(depths)
    results.append(_bench.Result(f"compile_125m_L{deep}_vs_L{shallow}", comp[deep],
                                 comp[shallow], "s", higher_is_better=False))  # fmt: skip
    _bench.finish(run, results, "Prefill forward: jaxlens vs HF transformers",
                  extra={"compile_seconds": comp})  # fmt: skip


if __name__ == "__main__":
    main()
