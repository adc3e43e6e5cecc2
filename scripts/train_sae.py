"""Train SAEs on a model's activations (or cached ones) and write a run folder.

    # one SAE per layer from one forward of an HF checkpoint, over a text corpus:
    python scripts/train_sae.py --model path/to/hf_dir --data corpus.txt --layers 3 4 5 \\
        --arch topk --k 32 --expansion 16 --steps 20000 --batch-size 4096 --out runs/sae
    # a tiny random model over the shipped test text (a smoke run, no download):
    python scripts/train_sae.py --tiny --data tests/data/sae/tiny.txt --steps 200 --out runs/tiny
    # activations cached by sae.write_cached_activations:
    python scripts/train_sae.py --cached acts_dir --arch relu --steps 5000 --out runs/cached

The run folder gets `config.json` (arguments and SAE config), `metrics.jsonl` (training
statistics every `--log-every` steps), `checkpoints/` (orbax; rerunning the same command
resumes), one SAELens folder per layer (`sae_layer<L>/`), `metrics.png` (loss, L0, FVU, dead
fraction), `density.png` (latent firing densities) and `report.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

import sae


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF checkpoint directory (safetensors)")
    src.add_argument("--tiny", action="store_true", help="jaxlens.ModelConfig.tiny(), random")
    src.add_argument("--cached", help="directory of cached activation shards")
    p.add_argument("--data", help="token dataset: .txt, .jsonl or .npy (with --model/--tiny)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: --model)")
    p.add_argument("--site", default="resid_post")
    p.add_argument("--layers", type=int, nargs="+", default=[1])
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--buffer-tokens", type=int, default=1 << 16)
    p.add_argument("--arch", default="topk", choices=sae.ARCHITECTURES)
    p.add_argument("--expansion", type=int, default=16)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--l1", type=float, default=None, help="l1_coefficient (relu)")
    p.add_argument("--l0", type=float, default=None, help="l0_coefficient (jumprelu)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=0, help="lr warm-up steps")
    p.add_argument("--sparsity-warmup", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--mesh", type=int, nargs=2, metavar=("DATA", "MODEL"), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder")
    return p.parse_args()


def byte_tokenizer(vocab_size: int):
    """Bytes folded into ids 3..V-1 (the tiny model has no tokenizer of its own)."""
    return lambda text: [3 + b % (vocab_size - 3) for b in text.encode("utf-8")]


def activation_source(args, key):
    """The activation source, and (model config, params, tokens) when a model is used."""
    if args.cached:
        return sae.CachedActivations(args.cached, key=key), None
    import jaxlens

    if args.data is None:
        raise SystemExit("--data is required with --model or --tiny")
    if args.tiny:
        config = jaxlens.ModelConfig.tiny()
        params = jaxlens.init_params(jax.random.key(args.seed), config)
        tokenizer = byte_tokenizer(config.vocab_size)
    else:
        config, params = jaxlens.load_hf(args.model)
        tokenizer = jaxlens.load_tokenizer(args.tokenizer or args.model)
    eos = config.eos_token_ids[0] if config.eos_token_ids else None
    tokens = sae.load_tokens(
        args.data,
        seq_len=args.seq_len,
        tokenizer=tokenizer,
        bos_token_id=config.bos_token_id,
        eos_token_id=eos,
        vocab_size=config.vocab_size,
    )
    layers = args.layers if len(args.layers) > 1 else args.layers[0]
    source = sae.ModelActivations(
        params,
        config,
        tokens,
        site=args.site,
        layers=layers,
        buffer_tokens=args.buffer_tokens,
        key=key,
    )
    return source, (config, params, tokens)


def plot(out: Path, history: list[dict], densities: dict[int, np.ndarray]) -> None:
    """`metrics.png` (training curves per layer) and `density.png` (firing densities)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, name in zip(axes, ("loss", "l0", "fvu", "dead_fraction"), strict=False):
        for i, layer in enumerate(densities):
            ax.plot(steps, [h[name][i] for h in history], label=f"layer {layer}")
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for layer, density in densities.items():
        counts, edges, dead = sae.density_histogram(density)
        ax.stairs(counts, edges, label=f"layer {layer} ({dead} dead)")
    ax.set_xlabel("log10 firing density")
    ax.set_ylabel("latents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "density.png", dpi=100)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(args.seed)
    source, model = activation_source(args, jax.random.fold_in(key, 1))
    first = next(iter(source.iter_batches(min(args.batch_size, 256))))
    d_in = first.shape[-1]
    extra = {k: v for k, v in (("l1_coefficient", args.l1), ("l0_coefficient", args.l0)) if v}
    config = sae.SAEConfig(
        d_in=d_in,
        d_sae=d_in * args.expansion,
        architecture=args.arch,
        k=args.k if args.arch in ("topk", "batchtopk") else None,
        **extra,
    )
    options = sae.FitOptions(
        lr_warmup_steps=args.warmup,
        sparsity_warmup_steps=args.sparsity_warmup,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
    )
    (out / "config.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "sae_config": dataclasses.asdict(config),
                "fit_options": dataclasses.asdict(options),
            },
            indent=2,
        )
    )
    mesh = None
    if args.mesh:
        mesh = jax.sharding.Mesh(
            np.array(jax.devices()[: args.mesh[0] * args.mesh[1]]).reshape(args.mesh),
            ("data", "model"),
        )
    history: list[dict] = []
    bar = tqdm(total=args.steps, desc=f"{args.arch} SAE", unit="step")
    log = (out / "metrics.jsonl").open("a")
    t0 = time.perf_counter()

    def callback(step: int, stats: dict) -> None:
        row = {"step": step, "time_s": round(time.perf_counter() - t0, 2), **stats}
        history.append(row)
        log.write(json.dumps(row) + "\n")
        log.flush()
        bar.n = step
        bar.set_postfix(l0=f"{stats['l0'][0]:.1f}", fvu=f"{stats['fvu'][0]:.3f}")
        bar.refresh()

    trained = sae.fit(
        source,
        config,
        key=key,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        mesh=mesh,
        options=options,
        checkpoint_dir=out / "checkpoints",
        callback=callback,
    )
    bar.close()
    log.close()
    trained = trained if isinstance(trained, list) else [trained]
    layers = args.layers if model is not None else list(range(len(trained)))
    eval_batch = next(iter(source.iter_batches(min(args.batch_size * 2, 8192))))  # seen data
    eval_batch = eval_batch if eval_batch.ndim == 3 else eval_batch[None]
    lines = [
        f"# SAE run: {args.arch}, {len(trained)} SAE(s)",
        "",
        f"d_in {d_in}, d_sae {config.d_sae}, steps {args.steps}, batch {args.batch_size}, "
        f"lr {args.lr}, {time.perf_counter() - t0:.0f} s",
        "",
        "| layer | L0 | FVU | dead | CE recovered | KL |",
        "|---|---|---|---|---|---|",
    ]
    densities = {}
    for i, (layer, params) in enumerate(zip(layers, trained, strict=False)):
        m = sae.metrics(params, eval_batch[i], config=config)
        densities[layer] = m.density
        ce = kl = float("nan")
        if model is not None:
            cfg, model_params, tokens = model
            s = sae.spliced_metrics(
                model_params,
                tokens[:16],
                model_config=cfg,
                sae_params=params,
                sae_config=config,
                site=args.site,
                layer=layer,
            )
            ce, kl = s.ce_loss_recovered, s.kl
        sae.save_saelens(
            out / f"sae_layer{layer}",
            config,
            params,
            metadata={"hook_name": f"{args.site}.{layer}", "context_size": args.seq_len},
        )
        lines.append(
            f"| {layer} | {m.l0:.1f} | {m.fvu:.3f} | {m.dead_fraction:.3f} | {ce:.3f} | {kl:.4f} |"
        )
    if history:
        plot(out, history, densities)
    lines += ["", "![metrics](metrics.png)", "![density](density.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
