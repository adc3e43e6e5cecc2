r"""SPIRAL self-play training: one policy plays both seats of the games (SPIRAL's Kuhn Poker run by
default; --quick: TicTacToe, Kuhn Poker and Simple Negotiation on the built-in model) and learns
from role-conditioned advantages with a PPO-clipped loss.

    python3 scripts/spiral_train.py --quick --out runs/spiral          # built-in model, minutes
    python3 scripts/spiral_train.py --model path/to/hf_dir --mesh data=2,fsdp=4 --out runs/qwen

Writes a run folder (config.json, metrics.jsonl, plots, report.md, checkpoints/, policy/ as an
HF directory) through `rl.selfplay.run_study`. Running again with the same --out resumes from
the last checkpoint; SIGTERM checkpoints and exits. See docs/spiral.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import jaxlens
import jaxlens.runs
import rl.envs
import rl.selfplay as sp
import rl.styles
from jaxlens.sharding import parse_mesh


def _sampling(text: str):
    """`--eval-sampling`: "train" (False: sample as in training) or "TEMPERATURE,TOP_P"."""
    if text == "train":
        return False
    try:
        t, p = (float(x) for x in text.split(","))
        return jaxlens.Sampling(temperature=t, top_p=p if p < 1 else None)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'train' or T,P ({e})") from None


def _given(**flags):
    """The flags the user set (None means: keep the preset's value)."""
    return {k: v for k, v in flags.items() if v is not None}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        default=str(jaxlens.BUILTIN_MODEL),
        help="HF checkpoint directory (default: the built-in model)",
    )
    p.add_argument(
        "--out", default="runs/spiral", help="run folder (resumes if it has checkpoints)"
    )
    p.add_argument("--quick", action="store_true", help="CPU-sized settings (SpiralConfig.quick)")
    p.add_argument("--steps", type=int, default=None, help="learner steps")
    p.add_argument(
        "--games",
        default=None,
        help="comma-separated (default: the preset's; SPIRAL's run: kuhn_poker, --quick: "
        + ",".join(rl.envs.BUILTIN)
        + ")",
    )
    p.add_argument(
        "--opponent",
        default="self",
        choices=sp.rollout.OPPONENTS,
        help="self-play, or train against a fixed opponent",
    )
    p.add_argument(
        "--baseline",
        default="role",
        choices=("role", "global", "none"),
        help="RAE (role) or an ablation",
    )
    p.add_argument("--samples-per-step", type=int, default=None)
    p.add_argument(
        "--batch-fill",
        choices=sp.train.BATCH_FILLS,
        default=None,
        help="nonzero: play on until --samples-per-step non-zero-advantage samples (SPIRAL); "
        "once: one collection",
    )
    p.add_argument(
        "--sample-draw",
        choices=sp.train.SAMPLE_DRAWS,
        default=None,
        help="which of more samples than --samples-per-step train (SPIRAL: random)",
    )
    p.add_argument("--slots", type=int, default=None, help="games played side by side")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--epochs", type=int, default=None, help="PPO epochs per batch")
    p.add_argument("--normalize", choices=sp.learner.NORMALIZE, default=None)
    p.add_argument("--kl", type=float, default=None, help="KL-to-initial coefficient (0: off)")
    p.add_argument("--micro-batch", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="bf16 forward, fp32 params and Adam")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument(
        "--env-option",
        action="append",
        default=[],
        metavar="GAME.OPTION=VALUE",
        help="a game's env option, repeatable (e.g. kuhn_poker.variant=standard); added to the "
        "preset's options of the games played",
    )
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument(
        "--eval-sampling",
        type=_sampling,
        default=None,
        metavar="TEMPERATURE,TOP_P",
        help="evaluation games' sampling (default SPIRAL's 0.6,0.95; 'train': as in training)",
    )
    p.add_argument(
        "--eval-opponents",
        default=None,
        help="comma-separated: random,optimal,model (default: the preset's)",
    )
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument(
        "--prompt-style",
        choices=rl.styles.STYLES,
        default=None,
        help="how games are worded and replies checked (default: builtin for the built-in model, "
        "spiral - SPIRAL's template around TextArena's text - for any other checkpoint)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="dtype the model is loaded and run in",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mesh", default=None, help="device mesh, e.g. data=2,fsdp=4,tensor=1")
    return p.parse_args(argv)


def build_config(args) -> sp.SpiralConfig:
    cfg = sp.SpiralConfig.quick() if args.quick else sp.SpiralConfig()
    games = tuple(args.games.split(",")) if args.games else cfg.rollout.games
    options = {g: dict(o) for g, o in cfg.rollout.env_options.items() if g in games}
    for g, o in rl.envs.parse_options(args.env_option).items():
        options[g] = {**options.get(g, {}), **o}
    roll = dataclasses.replace(
        cfg.rollout,
        games=games,
        opponent=args.opponent,
        env_options=options,
        **({"slots": args.slots} if args.slots else {}),
    )
    ppo_kw = _given(
        lr=args.lr,
        epochs=args.epochs,
        normalize=args.normalize,
        kl_coef=args.kl,
        micro_batch=args.micro_batch,
    )
    if args.bf16:
        ppo_kw["param_dtype"] = "bfloat16"
    gen = cfg.generation
    if args.max_new_tokens:
        gen = dataclasses.replace(gen, max_new_tokens=args.max_new_tokens)
    top = {} if args.eval_sampling is None else {"eval_sampling": args.eval_sampling or None}
    top |= _given(
        steps=args.steps,
        samples_per_step=args.samples_per_step,
        sample_draw=args.sample_draw,
        batch_fill=args.batch_fill,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        prompt_style=args.prompt_style,
        eval_opponents=tuple(args.eval_opponents.split(",")) if args.eval_opponents else None,
    )
    return dataclasses.replace(
        cfg,
        rollout=roll,
        generation=gen,
        ppo=dataclasses.replace(cfg.ppo, **ppo_kw),
        baseline=args.baseline,
        seed=args.seed,
        **top,
    )


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    headline = sp.run_study(
        args.model,
        args.out,
        config=cfg,
        mesh=parse_mesh(args.mesh),
        command=sys.argv,
        dtype=args.dtype,
    )
    print(json.dumps(headline, indent=2))
    print(f"report: {args.out}/report.md")


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
