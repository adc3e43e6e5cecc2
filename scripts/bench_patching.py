"""Benchmark: activation patching sweeps, `jaxlens.patch_sweep` against TransformerLens.

One random GPT-2 (`transformers.GPT2LMHeadModel`, seed 0) is saved once and loaded by both
sides, so they run the same weights: jaxlens by `load_hf`, TransformerLens 3.9 as a
`HookedTransformer` (no LN folding) from `convert_gpt2_weights`. Both run, in the same process
and run, the two sweeps a TransformerLens user writes with its `patching` module:

    resid   every layer x position of `resid_pre` (`get_act_patch_resid_pre`)
    z       every layer x head of `z`, all positions (`get_act_patch_attn_head_out_all_pos`)

on one clean / corrupted batch (the corrupted one differs in one column) with the metric the
logit difference of two tokens at the last position. TransformerLens's time includes the clean
`run_with_cache` its functions need (ours computes the clean activations inside the sweep);
its functions are a Python loop of `run_with_hooks` forwards. Ours is one jitted program per
sweep (vmapped patched forwards run in chunks by `lax.map`). Each sweep is called once (ours
compiles then; that time is reported as `_first_call`), then timed as the best of `rounds`
calls, ours and TransformerLens's alternating round by round; `logits_last=1` skips
the unembedding of positions the metric does not read, and the `_all_logits` lines time the
same sweep without it. The bench checks that both sides return the same metric arrays (max
abs difference) and stops if they do not.

TransformerLens is not a dependency of jaxlens: the bench looks for it in the main environment,
then in `$SAE_PEERS_DIR` (default /opt/jaxlens-peers/saelens, where `bash .ci/peers/sae.sh`
installs it beside sae-lens). Without either: `bash scripts/install_peer.sh
transformer-lens==3.9.0 /opt/jaxlens-peers/saelens` (into that folder only, resolved against
the main environment, which it leaves alone). Without TransformerLens the bench times ours only.

    python3 scripts/bench_patching.py --quick     # tiny GPT-2, seconds
    python3 scripts/bench_patching.py             # d 256, 6 layers, 8 heads, B8 x T32

Ends with `RESULT` lines (ratio > 1: ours faster) and writes a run folder (`--run`, default
runs/bench_patching[_quick]).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's spinning threads slow a shared CPU
os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's per-patch progress bars

import _bench  # noqa: E402
import numpy as np  # noqa: E402

PEERS_DIR = Path(os.environ.get("SAE_PEERS_DIR", "/opt/jaxlens-peers/saelens"))
FULL = dict(d=256, layers=6, heads=8, vocab=4096, batch=8, seq=32, rounds=2)
QUICK = dict(d=64, layers=2, heads=4, vocab=512, batch=2, seq=10, rounds=3)
TOLERANCE = 1e-3  # max |ours - TransformerLens| over a metric array (fp32, logit units)


def transformer_lens():
    """TransformerLens from the main environment, else from `PEERS_DIR` (appended, so the main
    environment's packages win); None with a message saying how to get it."""
    if PEERS_DIR.is_dir() and str(PEERS_DIR) not in sys.path:
        sys.path.append(str(PEERS_DIR))
    try:
        import transformer_lens
        import transformer_lens.patching  # noqa: F401
    except ImportError:
        print(f"# TransformerLens not found (main environment, {PEERS_DIR}): install it with "
              f"`bash scripts/install_peer.sh transformer-lens==3.9.0 {PEERS_DIR}` or "
              "`bash .ci/peers/sae.sh`; timing ours only")  # fmt: skip
        return None
    return transformer_lens


def make_model(spec: dict, path: Path) -> None:
    """A random GPT-2 of `spec`'s shape, saved as a Hugging Face checkpoint."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=spec["vocab"], n_positions=max(64, spec["seq"]), n_embd=spec["d"],
        n_layer=spec["layers"], n_head=spec["heads"], bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(path)


def batches(spec: dict) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Clean tokens, corrupted tokens (one middle column changed) and the metric's two ids."""
    rng = np.random.default_rng(1)
    clean = rng.integers(1, spec["vocab"], (spec["batch"], spec["seq"]))
    corrupted = clean.copy()
    corrupted[:, spec["seq"] // 2] = rng.integers(1, spec["vocab"], spec["batch"])
    return clean.astype(np.int32), corrupted.astype(np.int32), (3, 5)


def first_call(fn) -> dict:
    """`{fn, first_s, grid}`: the sweep's callable, its first call's seconds and its result."""
    start = time.perf_counter()
    grid = np.asarray(fn())
    return dict(fn=fn, first_s=time.perf_counter() - start, grid=grid)


def ours_sweeps(path: Path, clean, corrupted, ids) -> dict:
    """Our sweeps, each called once (that call compiles it): `{name: first_call(...)}`."""
    import jax
    import jax.numpy as jnp

    import jaxlens

    config, params = jaxlens.load_hf(path)
    a, b = ids

    def metric(logits):  # one function object: each sweep compiles once
        return jnp.mean(logits[:, -1, a] - logits[:, -1, b])

    sweeps = {
        "resid": dict(site="resid_pre", over=("layer", "pos"), logits_last=1),
        "z": dict(site="z", over=("layer", "head"), logits_last=1),
        "resid_all_logits": dict(site="resid_pre", over=("layer", "pos")),
        "z_all_logits": dict(site="z", over=("layer", "head")),
    }
    return {
        name: first_call(lambda kw=kw: jax.block_until_ready(
            jaxlens.patch_sweep(params, clean, corrupted, metric, config=config, **kw)
        ))
        for name, kw in sweeps.items()
    }  # fmt: skip


def hooked_gpt2(tl, path: Path):
    """The saved GPT-2 as a TransformerLens `HookedTransformer` (weights as they are)."""
    import transformers
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    hf = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
    c = hf.config
    cfg = tl.HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head,
        d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, n_ctx=c.n_positions, act_fn="gelu_new",
        normalization_type="LN", default_prepend_bos=False,
    )  # fmt: skip
    model = tl.HookedTransformer(cfg)
    model.load_state_dict(convert_gpt2_weights(hf, cfg), strict=False)
    return model.eval()


def tl_sweeps(tl, path: Path, clean, corrupted, ids) -> dict:
    """TransformerLens's own patching functions, the clean `run_with_cache` they need
    included, each called once: `{name: first_call(...)}`."""
    import torch
    from transformer_lens import patching

    torch.set_grad_enabled(False)
    model = hooked_gpt2(tl, path)
    clean_t, corrupted_t = (torch.as_tensor(x, dtype=torch.long) for x in (clean, corrupted))
    a, b = ids

    def metric(logits):
        return (logits[:, -1, a] - logits[:, -1, b]).mean()

    functions = {
        "resid": patching.get_act_patch_resid_pre,
        "z": patching.get_act_patch_attn_head_out_all_pos,
    }

    def sweep(patch):
        _, cache = model.run_with_cache(clean_t)
        return patch(model, corrupted_t, cache, metric).numpy()

    return {name: first_call(lambda f=f: sweep(f)) for name, f in functions.items()}


def best_times(ours: dict, theirs: dict, rounds: int) -> None:
    """Adds `best_s` to every sweep: the best of `rounds` calls, ours and TransformerLens's
    alternating round by round (drift on a shared machine hits both alike)."""
    fns = {("ours", k): r["fn"] for k, r in ours.items()}
    fns.update({("tl", k): r["fn"] for k, r in theirs.items()})
    for (side, name), best in _bench.interleaved_seconds(fns, rounds, warmup=0).items():
        (ours if side == "ours" else theirs)[name]["best_s"] = best


def compare(spec: dict, ours: dict, theirs: dict) -> tuple[list, dict]:
    """RESULT lines and each sweep's max |ours - TransformerLens|; stops on a mismatch."""
    R, lines, diffs = _bench.Result, [], {}
    shape = f"L{spec['layers']}xH{spec['heads']}_B{spec['batch']}xT{spec['seq']}"
    for name, peer in theirs.items():
        diffs[name] = float(np.abs(ours[name]["grid"] - peer["grid"]).max())
        if ours[name]["grid"].shape != peer["grid"].shape or diffs[name] > TOLERANCE:
            raise SystemExit(f"{name} sweep: ours and TransformerLens differ by {diffs[name]:.2e}")
        tag = f"{name}_sweep_{shape}"
        lines.append(R(f"{tag}_vs_tl", ours[name]["best_s"], peer["best_s"], "s", False))
        lines.append(R(f"{tag}_first_call_vs_tl", ours[name]["first_s"], peer["best_s"], "s",
                       False))  # fmt: skip
        lines.append(R(f"{tag}_all_logits_vs_tl", ours[f"{name}_all_logits"]["best_s"],
                       peer["best_s"], "s", False))  # fmt: skip
    return lines, diffs


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _bench.add_run_args(ap, "bench_patching")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    spec = QUICK if args.quick else FULL
    tl = transformer_lens()
    run = _bench.open_run("bench_patching", args)
    clean, corrupted, ids = batches(spec)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gpt2"
        make_model(spec, path)
        ours = ours_sweeps(path, clean, corrupted, ids)
        theirs = tl_sweeps(tl, path, clean, corrupted, ids) if tl else {}
    best_times(ours, theirs, spec["rounds"])
    print(f"# config {spec}; load average {os.getloadavg()}")
    for name, r in ours.items():
        print(f"# ours {name}: first call {r['first_s']:.3f} s, best {r['best_s']:.3f} s")
    for name, r in theirs.items():
        print(
            f"# TransformerLens {name}: first call {r['first_s']:.3f} s, best {r['best_s']:.3f} s"
        )
    lines, diffs = compare(spec, ours, theirs)
    for name, d in diffs.items():
        print(f"# {name} sweep: max |ours - TransformerLens| = {d:.2e}")
    strip = lambda d: {k: {f: r[f] for f in ("first_s", "best_s")} for k, r in d.items()}  # noqa: E731
    extra = {"spec": spec, "ours": strip(ours), "tl": strip(theirs), "max_abs_diff": diffs}
    _bench.finish(run, lines, "Patching sweeps vs TransformerLens", extra=extra)


if __name__ == "__main__":
    main()
