r"""Train SAEs on a model's activations (or cached ones) and write a run folder.

    # an SAE on every layer from one forward of an HF checkpoint per batch, over a text corpus:
    python scripts/train_sae.py --model path/to/hf_dir --data corpus.txt --layers all \
        --arch topk --k 32 --expansion 16 --steps 20000 --batch-size 4096 --out runs/sae \
        --mesh data=2,tensor=4
    # a tiny random model over the shipped test text (a smoke run, no download):
    python scripts/train_sae.py --tiny --data tests/data/sae/tiny.txt --steps 200 --out runs/tiny
    # activations cached by sae.write_cached_activations:
    python scripts/train_sae.py --cached acts_dir --arch relu --steps 5000 --out runs/cached

Every SAE trains in the same jitted step on the same batch of tokens (`sae.fit` over a
`sae.ModelActivations` source: all layers captured in one model forward). The run folder
(`jaxlens.runs.RunFolder`) gets `config.json`, `metrics.jsonl` (training statistics every
`--log-every` steps), `checkpoints/` (orbax; rerunning the same command resumes), one SAELens
folder per layer (`sae_layer<L>/`), `training.png`, `density.png`, `report.md` (a table per
layer: L0, MSE, FVU, dead fraction, CE loss recovered and KL when spliced into the model) and
`summary.json`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

import jaxlens
import jaxlens.runs
import sae


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF checkpoint directory (safetensors)")
    src.add_argument("--tiny", action="store_true", help="jaxlens.ModelConfig.tiny(), random")
    src.add_argument("--cached", help="directory of cached activation shards")
    p.add_argument("--data", help="token dataset: .txt, .jsonl or .npy (with --model/--tiny)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: --model)")
    p.add_argument("--site", default="resid_post", help="hook site the SAEs read")
    p.add_argument("--layers", nargs="+", default=["1"], help="layer numbers, or 'all'")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per window")
    p.add_argument("--buffer-tokens", type=int, default=1 << 16, help="shuffle buffer size")
    p.add_argument("--arch", default="topk", choices=sae.ARCHITECTURES)
    p.add_argument("--expansion", type=int, default=16, help="d_sae = expansion * d_model")
    p.add_argument("--k", type=int, default=32, help="latents per token (topk, batchtopk)")
    p.add_argument("--l1", type=float, default=None, help="l1_coefficient (relu)")
    p.add_argument("--l0", type=float, default=None, help="l0_coefficient (jumprelu)")
    p.add_argument("--dtype", default="float32", help="SAE params dtype (float32, bf16, ...)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=4096, help="tokens per step and SAE")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=0, help="lr warm-up steps")
    p.add_argument("--sparsity-warmup", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--mesh", default=None, help="device mesh, e.g. data=4,fsdp=1,tensor=2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder")
    args = p.parse_args()
    if args.cached is None and args.data is None:
        p.error("--data is required with --model or --tiny")
    if args.layers != ["all"]:
        try:
            args.layers = [int(layer) for layer in args.layers]
        except ValueError:
            p.error(f"--layers takes layer numbers or 'all'; got {args.layers}")
    return args


def open_model(args, mesh) -> jaxlens.LoadedModel:
    """`--tiny`: `jaxlens.ModelConfig.tiny()` with random weights, bytes as text; `--model`:
    the checkpoint with its own tokenizer or `--tokenizer`'s. With a mesh the weights live in
    their shards, on the devices the SAEs train on."""
    if args.tiny:
        config = jaxlens.ModelConfig.tiny()
        params = jaxlens.init_params(jax.random.key(args.seed), config, mesh=mesh)
        return jaxlens.LoadedModel(config, params, sae.byte_tokenizer(config.vocab_size), mesh)
    if args.tokenizer is None:
        return jaxlens.load_model(args.model, mesh=mesh)
    config, params = jaxlens.load_hf(args.model, mesh=mesh)
    tokenizer = jaxlens.load_tokenizer(args.tokenizer, config=config)
    return jaxlens.LoadedModel(config, params, tokenizer, mesh, Path(args.model))


def activation_source(args, key, mesh=None):
    """The activation source, the layers it yields, and (model config, params, tokens) for the
    spliced evaluation (None for cached activations)."""
    if args.cached:
        source = sae.CachedActivations(args.cached, key=key)
        first = next(iter(source.iter_batches(1)))
        return source, list(range(first.shape[0])) if first.ndim == 3 else [0], None
    model = open_model(args, mesh)
    layers = "all" if args.layers == ["all"] else args.layers
    source = sae.ModelActivations.from_file(
        model,
        args.data,
        seq_len=args.seq_len,
        site=args.site,
        layers=layers if layers == "all" or len(layers) > 1 else layers[0],  # one: [B, D]
        buffer_tokens=args.buffer_tokens,
        key=key,
    )
    return source, list(source.layers), (model.config, model.params, source.tokens)


def sae_config(args, d_in: int) -> sae.SAEConfig:
    """The `SAEConfig` the flags ask for (`--l1` / `--l0` only when given)."""
    extra = {k: v for k, v in (("l1_coefficient", args.l1), ("l0_coefficient", args.l0)) if v}
    return sae.SAEConfig(
        d_in=d_in,
        d_sae=d_in * args.expansion,
        architecture=args.arch,
        k=args.k if args.arch in ("topk", "batchtopk") else None,
        dtype=args.dtype,
        **extra,
    )


def progress_callback(run: jaxlens.runs.RunFolder, bar, history: list[dict]):
    """`sae.fit`'s callback: a row in `metrics.jsonl` and `history`, and the progress bar."""

    def callback(step: int, stats: dict) -> None:
        row = {"step": step, "time_s": round(run.elapsed(), 2), **stats}
        history.append(row)
        run.log(row)
        bar.update(step - bar.n)
        bar.set_postfix(l0=f"{stats['l0'][0]:.1f}", fvu=f"{stats['fvu'][0]:.3f}")

    return callback


def main() -> None:
    args = parse_args()
    key = jax.random.key(args.seed)
    mesh = jaxlens.sharding.parse_mesh(args.mesh)
    source, layers, model = activation_source(args, jax.random.fold_in(key, 1), mesh)
    config = sae_config(args, next(iter(source.iter_batches(1))).shape[-1])
    options = sae.FitOptions(
        lr_warmup_steps=args.warmup,
        sparsity_warmup_steps=args.sparsity_warmup,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
    )
    run = jaxlens.runs.RunFolder(
        args.out,
        config={"args": vars(args), "sae_config": config, "fit_options": options},
        command=sys.argv,
        resume=True,
    )
    history: list[dict] = []
    bar = jaxlens.runs.progress(
        desc=f"{args.arch} SAEs x{len(layers)}", unit="step", total=args.steps
    )
    jaxlens.runs.resume_progress(bar, sae.resumed_step(run / "checkpoints"))
    trained = sae.fit(
        source,
        config,
        key=key,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        mesh=mesh,
        options=options,
        checkpoint_dir=run / "checkpoints",
        callback=progress_callback(run, bar, history),
    )
    bar.close()
    trained = trained if isinstance(trained, list) else [trained]
    eval_batch = next(iter(source.iter_batches(min(args.batch_size * 2, 8192))))  # seen data
    rows, densities = sae.evaluate_layers(
        trained, config, eval_batch, layers=layers, model=model, site=args.site
    )
    for layer, params in zip(layers, trained, strict=True):
        metadata = {"hook_name": f"{args.site}.{layer}", "context_size": args.seq_len}
        sae.save_saelens(run / f"sae_layer{layer}", config, params, metadata=metadata)
    run.summary(rows)
    if history:
        run.figure("training", sae.training_figure(history, layers))
    run.figure("density", sae.density_figure(densities), caption="latent firing densities")
    print(run.write_report(f"SAE run: {args.arch}, {len(trained)} SAE(s), d_sae {config.d_sae}"))
    print(jaxlens.runs.markdown_table(rows))


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
