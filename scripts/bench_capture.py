"""Benchmark: activation capture, steering and generation against HF and TransformerLens.

One random Llama-style model (~125M: D 768, 12 layers, 12 heads, 4 kv heads, F 2048, V 32000)
is drawn by `transformers`, saved as safetensors, and loaded by every contender, so all of them
run the same weights (the logits are cross-checked). Each peer runs in its own subprocess:

    hf    transformers, forward with and without `output_hidden_states`, `generate` (KV cache)
    tl3   transformer-lens 3.9 `HookedTransformer` (no LN folding), `run_with_cache` /
          `run_with_hooks`, from a --target folder (it conflicts with tl4)
    tl4   transformer-lens 4.x `TransformerBridge.boot_transformers(hf_model=...)`, same calls

Times are the minimum over repeats (the machine may be shared); our forward variants run
interleaved, round after round, so drift hits them alike. Peers run with
`OMP_WAIT_POLICY=PASSIVE` (unless set otherwise): on a shared machine torch's spinning
OpenMP threads otherwise slow it down up to 40x (a 4-layer forward: 1.5 s, not 40 ms).
`--install-peers` installs tl3/tl4 into `$JAXLENS_PEERS_DIR/tl{3,4}` (default
/opt/jaxlens-peers) without touching the main environment: pip resolves each against it, and
only the packages it would add go into the folder.

Decode steps are memory-bound: each reads every weight once (the embedding table excepted,
unless tied as the LM head) plus the whole KV cache. The bench measures the memory bandwidth
in the same run (a jitted fp32 sum over a large buffer, best of several, before each batch
size) and prints every decode step as a fraction of that limit, `bytes read per step /
bandwidth`, for us and for HF; with `--decode-dtypes float32,bf16` (the default) our decode is
also timed with bfloat16 weights (against their own, half, limit).

    python3 scripts/bench_capture.py --quick     # small config, under a minute
    python3 scripts/bench_capture.py             # the 125M config, B8 x T256

Ends with `RESULT` lines (ratio > 1: ours better) and writes a run folder (`--run`, default
runs/bench_capture[_quick]) with a plot of decode step times against the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import _bench
import numpy as np

from jaxlens import canonical_dtype
from jaxlens.runs import markdown_table, progress

PEERS_DIR = Path(os.environ.get("JAXLENS_PEERS_DIR", "/opt/jaxlens-peers"))
TL_VERSIONS = {"tl3": "3.9.0", "tl4": "4.3.0"}
FULL = dict(
    d=768,
    layers=12,
    heads=12,
    kv=4,
    ff=2048,
    vocab=32000,
    batch=8,
    seq=256,
    prompt=128,
    new=128,
    gen_batches=(1, 8, 16),
    repeats=5,
    gen_repeats=2,
    bandwidth_bytes=1 << 30,
)
QUICK = dict(
    d=256,
    layers=4,
    heads=8,
    kv=4,
    ff=512,
    vocab=4096,
    batch=4,
    seq=64,
    prompt=16,
    new=16,
    gen_batches=(1, 8),
    repeats=2,
    gen_repeats=1,
    bandwidth_bytes=1 << 28,
)
STEER_LAYER_FRACTION = 0.5


def best_ms(fn, repeats: int) -> float:
    return 1e3 * _bench.best_seconds(fn, repeats)


def interleaved_ms(fns: dict, repeats: int) -> dict:
    """Best time per function, running them round-robin (after one warm-up call each)."""
    return {k: 1e3 * t for k, t in _bench.interleaved_seconds(fns, repeats).items()}


def time_generation(make_gen, spec: dict, first_row, bandwidth=None, tag: str = "") -> dict:
    """New tokens/s of `generate` (prefill included) and ms per decode step (prefill excluded:
    the time difference between `new` and `new // 4` new tokens), per batch size.

    `bandwidth()`, when given, measures the memory bandwidth (bytes/s) before each batch size;
    the best measurement is returned as `bandwidth`.
    """
    res, r = {}, spec["gen_repeats"]
    short = spec["new"] // 4
    seen = []
    for b in spec["gen_batches"]:
        if bandwidth is not None:
            seen.append(bandwidth())
        p = tokens_for(spec["vocab"], b, spec["prompt"], seed=2)
        full, part = make_gen(p, spec["new"]), make_gen(p, short)
        times = interleaved_ms({"full": full, "part": part}, r)
        res[f"generate_b{b}{tag}_tok_s"] = b * spec["new"] * 1e3 / times["full"]
        res[f"decode_step_b{b}{tag}_ms"] = (times["full"] - times["part"]) / (spec["new"] - short)
        if b == 1 and not tag:
            res["greedy_b1"] = np.asarray(first_row(full())).tolist()
    if seen:
        res["bandwidth"] = max(seen)
    return res


def decode_bytes(spec: dict, batch: int, itemsize: int) -> int:
    """Bytes one decode step reads: every weight but the embedding table (untied: the LM head
    is its own matrix), and the whole `[L, B, K, prompt + new, E]` key and value cache."""
    d, f, v, kv, h = spec["d"], spec["ff"], spec["vocab"], spec["kv"], spec["heads"]
    e = d // h
    layer = d * h * e * 2 + d * kv * e * 2 + 3 * d * f + 2 * d
    weights = spec["layers"] * layer + d * v + d
    cache = 2 * spec["layers"] * batch * kv * (spec["prompt"] + spec["new"]) * e
    return (weights + cache) * itemsize


def tokens_for(vocab: int, batch: int, seq: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, vocab, (batch, seq)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Peers (each in its own process)


def make_model(spec: dict, path: Path) -> None:
    import torch
    import transformers
    from tokenizers import Tokenizer, models

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=spec["vocab"],
        hidden_size=spec["d"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv"],
        intermediate_size=spec["ff"],
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    transformers.LlamaForCausalLM(config).eval().save_pretrained(path)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    ).save_pretrained(path)


def _tl3_model(hf):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    c = hf.config
    cfg = HookedTransformerConfig(
        d_model=c.hidden_size,
        d_head=c.head_dim,
        n_heads=c.num_attention_heads,
        d_mlp=c.intermediate_size,
        n_layers=c.num_hidden_layers,
        n_ctx=2048,
        eps=c.rms_norm_eps,
        d_vocab=c.vocab_size,
        act_fn=c.hidden_act,
        n_key_value_heads=c.num_key_value_heads,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,
        rotary_dim=c.head_dim,
        rotary_base=c.rope_parameters["rope_theta"],
        final_rms=True,
        gated_mlp=True,
        original_architecture="LlamaForCausalLM",
        default_prepend_bos=False,
    )
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(
        convert_llama_weights(hf, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    return model.eval()


def run_peer(name: str, spec: dict, path: Path, out: Path) -> None:
    """Times one peer and writes `{name: ms or tok/s, ...}` plus row-0 logits to `out`."""
    if name in TL_VERSIONS:
        sys.path.append(str(PEERS_DIR / name))  # the main environment's packages win
    import torch
    import transformers

    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_grad_enabled(False)
    hf = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    x = torch.as_tensor(tokens_for(spec["vocab"], spec["batch"], spec["seq"], seed=0))
    steer_layer = int(spec["layers"] * STEER_LAYER_FRACTION)
    v = torch.as_tensor(np.random.default_rng(1).normal(size=spec["d"]), dtype=torch.float32)
    r = spec["repeats"]
    res: dict[str, float] = {}
    if name == "hf":
        res["plain_ms"] = best_ms(lambda: hf(x), r)
        res["hidden_states_ms"] = best_ms(lambda: hf(x, output_hidden_states=True), r)
        logits = hf(x).logits

        def make_gen(p, n):
            cfg = transformers.GenerationConfig(
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=2,
            )
            p = torch.as_tensor(p)
            mask = torch.ones_like(p)
            return lambda: hf.generate(p, attention_mask=mask, generation_config=cfg)

        res.update(time_generation(make_gen, spec, lambda out: out[0, spec["prompt"] :]))
    else:
        if name == "tl3":
            model = _tl3_model(hf)
        else:
            from transformer_lens.model_bridge import TransformerBridge

            tok = transformers.AutoTokenizer.from_pretrained(path)
            model = TransformerBridge.boot_transformers(str(path), hf_model=hf, tokenizer=tok)
        only_resid = lambda n: n.endswith("hook_resid_post")  # noqa: E731
        hook = (f"blocks.{steer_layer}.hook_resid_post", lambda a, hook: a + v)
        res["plain_ms"] = best_ms(lambda: model(x), r)
        res["run_with_cache_ms"] = best_ms(
            lambda: model.run_with_cache(x, names_filter=only_resid), r
        )
        res["run_with_hooks_ms"] = best_ms(lambda: model.run_with_hooks(x, fwd_hooks=[hook]), r)
        logits = model(x)
    res["logits_row0"] = logits[0, -4:].float().numpy().tolist()
    out.write_text(json.dumps(res))


# --------------------------------------------------------------------------------------------
# Ours


def run_ours(spec: dict, path: Path, decode_dtypes=("float32",), row_major=False) -> dict:
    import jax

    import jaxlens

    config, params = jaxlens.load_hf(path)
    x = tokens_for(spec["vocab"], spec["batch"], spec["seq"], seed=0).astype(np.int32)
    r = spec["repeats"]
    steer_layer = int(spec["layers"] * STEER_LAYER_FRACTION)
    v = np.random.default_rng(1).normal(size=spec["d"]).astype(np.float32)

    def fwd(**kw):
        return lambda: jax.block_until_ready(jaxlens.forward(params, x, config=config, **kw))

    variants = {"plain_ms": fwd()}
    for reduce in ("none", "last", "mean"):
        cap = jaxlens.Capture(sites=("resid_post",), reduce=reduce)
        variants[f"capture_{reduce}_ms"] = fwd(capture=cap)
    variants["steer_ms"] = fwd(interventions=jaxlens.steer("resid_post", steer_layer, v))
    res = interleaved_ms(variants, r)
    res["logits_row0"] = np.asarray(jaxlens.forward(params, x, config=config).logits[0, -4:])

    def generator(params, config, transpose=True):
        def make_gen(p, n):
            p, key = p.astype(np.int32), jax.random.key(0)
            greedy = jaxlens.Sampling(temperature=0.0)
            return lambda: jax.block_until_ready(
                jaxlens.generate(params, p, config=config, key=key, max_new_tokens=n,
                                 sampling=greedy, transpose_kernels=transpose)
            )  # fmt: skip

        return make_gen

    size = spec["bandwidth_bytes"]
    bandwidth = lambda: _bench.memory_bandwidth(size)  # noqa: E731
    variants = [(d, True) for d in decode_dtypes] + ([("float32", False)] if row_major else [])
    for dtype, transpose in variants:
        tag = ("" if dtype == "float32" else f"_{dtype}") + ("" if transpose else "_row_major")
        config, params = jaxlens.load_hf(path, dtype=dtype)
        out = time_generation(
            generator(params, config, transpose), spec, lambda out: out.tokens[0], bandwidth, tag
        )
        res["bandwidth"] = max(res.get("bandwidth", 0.0), out.pop("bandwidth"))
        res.update(out)
    return res


# --------------------------------------------------------------------------------------------
# Driver


def install_peers() -> None:
    installer = Path(__file__).resolve().parent / "install_peer.sh"
    for name, version in TL_VERSIONS.items():
        subprocess.run(
            ["bash", str(installer), f"transformer-lens=={version}", str(PEERS_DIR / name)],
            check=True,
        )


def run_peers(spec: dict, path: Path, peers: list[str], quick: bool, tmp: str) -> dict:
    """Each peer in its own process; `{peer: its results}` for those that ran."""
    out_all = {}
    for peer in progress(peers, desc="peers", unit="peer"):
        if peer in TL_VERSIONS and not (PEERS_DIR / peer / "transformer_lens").is_dir():
            print(f"# {peer}: not installed under {PEERS_DIR} (run with --install-peers)")
            continue
        out = Path(tmp) / f"{peer}.json"
        cmd = [sys.executable, __file__, "--peer", peer, "--dir", str(path), "--out", str(out)]
        done = subprocess.run(
            cmd + (["--quick"] if quick else []),
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
        )
        if done.returncode:
            print(f"# {peer} failed:\n{done.stderr[-3000:]}")
            continue
        out_all[peer] = json.loads(out.read_text())
    return out_all


def capture_results(ours: dict, peer_res: dict) -> list[_bench.Result]:
    """Capture and steering against our plain forward, TransformerLens and HF."""
    R = _bench.Result
    lines = [
        R(f"capture_resid_post_all_layers_{r}_vs_plain", ours[f"capture_{r}_ms"],
          ours["plain_ms"], "ms", False)
        for r in ("none", "last", "mean")
    ]  # fmt: skip
    tl = {p: peer_res[p] for p in ("tl3", "tl4") if p in peer_res}
    for p, res in tl.items():
        lines.append(R(f"run_with_cache_resid_post_vs_{p}", ours["capture_none_ms"],
                       res["run_with_cache_ms"], "ms", False))  # fmt: skip
        lines.append(R(f"steer_vs_{p}_run_with_hooks", ours["steer_ms"],
                       res["run_with_hooks_ms"], "ms", False))  # fmt: skip
    if tl:
        lines.append(R("run_with_cache_vs_fastest_tl", ours["capture_none_ms"],
                       min(r["run_with_cache_ms"] for r in tl.values()), "ms", False))  # fmt: skip
        lines.append(R("steer_vs_fastest_tl", ours["steer_ms"],
                       min(r["run_with_hooks_ms"] for r in tl.values()), "ms", False))  # fmt: skip
    if "hf" in peer_res:
        hf = peer_res["hf"]
        lines.append(R("capture_vs_hf_output_hidden_states", ours["capture_none_ms"],
                       hf["hidden_states_ms"], "ms", False))  # fmt: skip
        lines.append(R("plain_forward_vs_hf", ours["plain_ms"], hf["plain_ms"], "ms", False))
    return lines


def decode_results(spec: dict, ours: dict, hf: dict | None, dtypes) -> tuple[list, list]:
    """Generation vs HF, and every decode step as a fraction of the bandwidth limit."""
    R, lines, rows = _bench.Result, [], []
    bw = ours["bandwidth"]
    for b in spec["gen_batches"]:
        limit = 1e3 * decode_bytes(spec, b, 4) / bw
        mine = ours[f"decode_step_b{b}_ms"]
        row = {"batch": b, "limit_ms": limit, "ours_ms": mine, "ours_fraction": limit / mine}
        if hf is not None:
            theirs = hf[f"decode_step_b{b}_ms"]
            row.update(hf_ms=theirs, hf_fraction=limit / theirs)
            lines.append(R(f"generate_b{b}_vs_hf", ours[f"generate_b{b}_tok_s"],
                           hf[f"generate_b{b}_tok_s"], "tok/s"))  # fmt: skip
            lines.append(R(f"decode_step_b{b}_vs_hf", mine, theirs, "ms", False))
            lines.append(R(f"decode_step_b{b}_fraction_of_limit_vs_hf", limit / mine,
                           limit / theirs, "fraction"))  # fmt: skip
        for dtype in dtypes:
            if dtype == "float32":
                continue
            half = 1e3 * decode_bytes(spec, b, 2) / bw
            other = ours[f"decode_step_b{b}_{dtype}_ms"]
            row.update({f"{dtype}_limit_ms": half, f"{dtype}_ms": other,
                        f"{dtype}_fraction": half / other})  # fmt: skip
            lines.append(R(f"decode_step_b{b}_{dtype}_vs_float32", other, mine, "ms", False))
        if f"decode_step_b{b}_row_major_ms" in ours:
            other = ours[f"decode_step_b{b}_row_major_ms"]
            row.update(row_major_ms=other, row_major_fraction=limit / other)
            lines.append(R(f"decode_step_b{b}_transposed_vs_row_major_kernels", mine, other, "ms",
                           False))  # fmt: skip
        rows.append(row)
    return lines, rows


def decode_figure(rows: list[dict], dtypes):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    batches = [r["batch"] for r in rows]
    ax.plot(batches, [r["limit_ms"] for r in rows], "k--", label="fp32 bandwidth limit")
    ax.plot(batches, [r["ours_ms"] for r in rows], "o-", label="jaxlens fp32")
    if "row_major_ms" in rows[0]:
        ax.plot(batches, [r["row_major_ms"] for r in rows], "x-", label="jaxlens fp32, row-major")
    if "hf_ms" in rows[0]:
        ax.plot(batches, [r["hf_ms"] for r in rows], "s-", label="HF fp32")
    for dtype in dtypes:
        if dtype != "float32":
            ax.plot(batches, [r[f"{dtype}_ms"] for r in rows], "^-", label=f"jaxlens {dtype}")
            ax.plot(batches, [r[f"{dtype}_limit_ms"] for r in rows], ":", label=f"{dtype} limit")
    ax.set_xlabel("batch")
    ax.set_ylabel("ms per decode step")
    ax.set_xscale("log", base=2)
    ax.legend()
    return fig


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _bench.add_run_args(ap, "bench_capture")
    ap.add_argument("--peers", default="hf,tl3,tl4", help="comma-separated subset")
    ap.add_argument(
        "--decode-dtypes",
        default="float32,bfloat16",
        help="weight dtypes our decode is timed in, any spelling (fp32, bf16); fp32 always runs",
    )
    ap.add_argument(
        "--row-major",
        action="store_true",
        help="also time our fp32 decode with row-major kernels (generate(transpose_kernels=False))",
    )
    ap.add_argument("--install-peers", action="store_true", help="install tl3/tl4 first")
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def decode_dtypes(flag: str) -> list[str]:
    """`--decode-dtypes` in canonical spelling, float32 first and once."""
    named = dict.fromkeys(canonical_dtype(x, name="--decode-dtypes") for x in flag.split(",") if x)
    return ["float32"] + [d for d in named if d != "float32"]


def print_results(spec: dict, ours: dict, peer_res: dict) -> None:
    """Our timings and each peer's, with its logits' distance from ours (popped from both)."""
    ours_logits = np.asarray(ours.pop("logits_row0"))
    shown = {k: round(v, 2) for k, v in ours.items() if k not in ("greedy_b1", "bandwidth")}
    print(f"# config {spec}; load average {os.getloadavg()}; ours: {json.dumps(shown)}")
    for peer, res in peer_res.items():
        diff = np.abs(np.asarray(res.pop("logits_row0")) - ours_logits).max()
        shown = {k: round(v, 2) for k, v in res.items() if k != "greedy_b1"}
        print(f"# {peer}: {json.dumps(shown)}; max |logits - ours| = {diff:.2e}")
    hf = peer_res.get("hf")
    if hf is not None:
        same = np.mean(np.asarray(ours["greedy_b1"]) == np.asarray(hf["greedy_b1"]))
        print(f"# greedy b1 tokens equal to HF's: {same:.0%}")


def main(argv=None) -> None:
    args = parse_args(argv)
    spec = QUICK if args.quick else FULL
    if args.peer:
        return run_peer(args.peer, spec, Path(args.dir), Path(args.out))
    dtypes = decode_dtypes(args.decode_dtypes)
    if args.install_peers:
        install_peers()
    run = _bench.open_run("bench_capture", args)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        make_model(spec, path)
        ours = run_ours(spec, path, dtypes, args.row_major)
        peer_res = run_peers(spec, path, [p for p in args.peers.split(",") if p], args.quick, tmp)
    print_results(spec, ours, peer_res)
    lines = capture_results(ours, peer_res)
    decode_lines, rows = decode_results(spec, ours, peer_res.get("hf"), dtypes)
    gbs = ours["bandwidth"] / 1e9
    print(f"# memory bandwidth (jitted fp32 sum, best in this run): {gbs:.1f} GB/s")
    for r in rows:
        text = ", ".join(f"{k} {v:.3g}" for k, v in r.items() if k != "batch")
        print(f"# decode step B{r['batch']}: {text}")
    run.section("Decode steps against the bandwidth limit", markdown_table(rows))
    run.figure("decode_steps", decode_figure(rows, dtypes))
    title = "Capture, steering and generation vs HF and TransformerLens"
    extra = {"ours": ours, "peers": peer_res, "decode": rows}
    _bench.finish(run, lines + decode_lines, title, extra=extra)


if __name__ == "__main__":
    main()
