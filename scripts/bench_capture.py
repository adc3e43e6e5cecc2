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

    python scripts/bench_capture.py --quick      # small config, under a minute
    python scripts/bench_capture.py              # the 125M config, B8 x T256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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
)
STEER_LAYER_FRACTION = 0.5


def best_ms(fn, repeats: int) -> float:
    fn()  # warm up (compile / allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def interleaved_ms(fns: dict, repeats: int) -> dict:
    """Best time per function, running them round-robin (after one warm-up call each)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * min(t) for name, t in times.items()}


def time_generation(make_gen, spec: dict, first_row) -> dict:
    """New tokens/s of `generate` (prefill included) and ms per decode step (prefill excluded:
    the time difference between `new` and `new // 4` new tokens), per batch size."""
    res, r = {}, spec["gen_repeats"]
    short = spec["new"] // 4
    for b in spec["gen_batches"]:
        p = tokens_for(spec["vocab"], b, spec["prompt"], seed=2)
        full, part = make_gen(p, spec["new"]), make_gen(p, short)
        times = interleaved_ms({"full": full, "part": part}, r)
        res[f"generate_b{b}_tok_s"] = b * spec["new"] * 1e3 / times["full"]
        res[f"decode_step_b{b}_ms"] = (times["full"] - times["part"]) / (spec["new"] - short)
        if b == 1:
            res["greedy_b1"] = np.asarray(first_row(full())).tolist()
    return res


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


def run_ours(spec: dict, path: Path) -> dict:
    import jax

    import jaxlens
    from jaxlens.checkpoint import load_hf
    from jaxlens.generate import Sampling, generate

    config, params = load_hf(path)
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

    def make_gen(p, n):
        p, key, greedy = p.astype(np.int32), jax.random.key(0), Sampling(temperature=0.0)
        return lambda: jax.block_until_ready(
            generate(params, p, config=config, key=key, max_new_tokens=n, sampling=greedy)
        )

    res.update(time_generation(make_gen, spec, lambda out: out.tokens[0]))
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


def result(name: str, ours: float, peer: float, unit: str, higher_is_better: bool) -> str:
    ratio = ours / peer if higher_is_better else peer / ours
    return f"RESULT {name} ours={ours:.4g} peer={peer:.4g} unit={unit} ratio={ratio:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small config, one repeat")
    ap.add_argument("--peers", default="hf,tl3,tl4", help="comma-separated subset")
    ap.add_argument("--install-peers", action="store_true")
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    spec = QUICK if args.quick else FULL
    if args.peer:
        return run_peer(args.peer, spec, Path(args.dir), Path(args.out))
    if args.install_peers:
        install_peers()
    peers = [p for p in args.peers.split(",") if p]
    lines, peer_res = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        make_model(spec, path)
        ours = run_ours(spec, path)
        for peer in peers:
            if peer in TL_VERSIONS and not (PEERS_DIR / peer / "transformer_lens").is_dir():
                print(f"# {peer}: not installed under {PEERS_DIR} (run with --install-peers)")
                continue
            out = Path(tmp) / f"{peer}.json"
            cmd = [sys.executable, __file__, "--peer", peer, "--dir", str(path), "--out", str(out)]
            done = subprocess.run(
                cmd + (["--quick"] if args.quick else []),
                capture_output=True,
                text=True,
                env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
            )
            if done.returncode:
                print(f"# {peer} failed:\n{done.stderr[-3000:]}")
                continue
            peer_res[peer] = json.loads(out.read_text())
    ours_logits = np.asarray(ours.pop("logits_row0"))
    shown = {k: round(v, 2) for k, v in ours.items() if k != "greedy_b1"}
    print(f"# config {spec}; load average {os.getloadavg()}; ours: {json.dumps(shown)}")
    for peer, res in peer_res.items():
        diff = np.abs(np.asarray(res.pop("logits_row0")) - ours_logits).max()
        shown = {k: round(v, 2) for k, v in res.items() if k != "greedy_b1"}
        print(f"# {peer}: {json.dumps(shown)}; max |logits - ours| = {diff:.2e}")
    plain = ours["plain_ms"]
    for reduce in ("none", "last", "mean"):
        lines.append(
            result(
                f"capture_resid_post_all_layers_{reduce}_vs_plain",
                ours[f"capture_{reduce}_ms"],
                plain,
                "ms",
                False,
            )
        )
    tl = {p: peer_res[p] for p in ("tl3", "tl4") if p in peer_res}
    for p, res in tl.items():
        lines.append(
            result(
                f"run_with_cache_resid_post_vs_{p}",
                ours["capture_none_ms"],
                res["run_with_cache_ms"],
                "ms",
                False,
            )
        )
        lines.append(
            result(
                f"steer_vs_{p}_run_with_hooks",
                ours["steer_ms"],
                res["run_with_hooks_ms"],
                "ms",
                False,
            )
        )
    if tl:
        lines.append(
            result(
                "run_with_cache_vs_fastest_tl",
                ours["capture_none_ms"],
                min(r["run_with_cache_ms"] for r in tl.values()),
                "ms",
                False,
            )
        )
        lines.append(
            result(
                "steer_vs_fastest_tl",
                ours["steer_ms"],
                min(r["run_with_hooks_ms"] for r in tl.values()),
                "ms",
                False,
            )
        )
    if "hf" in peer_res:
        hf = peer_res["hf"]
        lines.append(
            result(
                "capture_vs_hf_output_hidden_states",
                ours["capture_none_ms"],
                hf["hidden_states_ms"],
                "ms",
                False,
            )
        )
        lines.append(result("plain_forward_vs_hf", plain, hf["plain_ms"], "ms", False))
        same = np.mean(np.asarray(ours["greedy_b1"]) == np.asarray(hf["greedy_b1"]))
        print(f"# greedy b1 tokens equal to HF's: {same:.0%}")
        for b in spec["gen_batches"]:
            key = f"generate_b{b}_tok_s"
            lines.append(result(f"generate_b{b}_vs_hf", ours[key], hf[key], "tok/s", True))
        for b in spec["gen_batches"]:
            key = f"decode_step_b{b}_ms"
            lines.append(result(f"decode_step_b{b}_vs_hf", ours[key], hf[key], "ms", False))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
