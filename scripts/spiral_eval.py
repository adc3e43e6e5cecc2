r"""Evaluate a policy: games against fixed opponents (win / loss / draw / invalid rates and game
lengths per game and role) and reasoning benchmarks from local files (pass@1 with its standard
error), all sampled at SPIRAL's evaluation settings (temperature 0.6, top-p 0.95).

    python3 scripts/spiral_eval.py --quick --out runs/spiral_eval      # the built-in model
    python3 scripts/spiral_eval.py --model runs/spiral/policy --opponents random,optimal,model \
        --frozen path/to/start_model --reasoning math500.jsonl aime24.parquet gpqa_diamond.parquet \
        --reasoning-samples 4 --out runs/spiral_eval

--reasoning defaults to the bundled arithmetic set (rl/data/arithmetic.jsonl); files are read
locally only; math is graded by math-verify, multiple choice by the boxed letter. For every game
that registers a strategy readout (Kuhn Poker), the report adds the policy's strategy table and
what it is worth, exactly (--strategy-samples replies per cell; Kuhn Poker: against random and
Nash play). The work is `rl.selfplay.evaluate_study`; see docs/spiral.md.
"""

from __future__ import annotations

import argparse
import sys

import jaxlens
import jaxlens.runs
import rl.envs
import rl.reasoning
import rl.selfplay as sp
import rl.styles
from jaxlens.runs import markdown_table
from jaxlens.sharding import parse_mesh


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=str(jaxlens.BUILTIN_MODEL), help="HF directory")
    p.add_argument("--out", default="runs/spiral_eval", help="run folder")
    p.add_argument("--quick", action="store_true", help="few games and reasoning items")
    p.add_argument("--games", default=",".join(rl.envs.BUILTIN))
    p.add_argument("--opponents", default="random,optimal", help="random,optimal,model")
    p.add_argument("--frozen", default=None, help="HF directory of the 'model' opponent")
    p.add_argument("--games-per-slot", type=int, default=None, help="games per slot and opponent")
    p.add_argument("--slots", type=int, default=12)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.6, help="SPIRAL's evaluation: 0.6")
    p.add_argument("--top-p", type=float, default=0.95, help="SPIRAL's evaluation: 0.95 (1: off)")
    p.add_argument(
        "--reasoning",
        nargs="+",
        default=[str(rl.reasoning.BUNDLED)],
        metavar="FILE",
        help="local benchmark files, JSONL or parquet (MATH-500, AIME, AMC, Minerva, "
        "OlympiadBench, GPQA-Diamond, MMLU-Pro with their usual fields; rl.benchmarks)",
    )
    p.add_argument("--reasoning-items", type=int, default=None, help="only the first N of each")
    p.add_argument("--reasoning-samples", type=int, default=1, help="replies per question")
    p.add_argument(
        "--strategy-samples",
        type=int,
        default=None,
        help="replies sampled per cell of a game's strategy table (Kuhn Poker: betting node and "
        "card; default 64, 16 with --quick; 0 skips it)",
    )
    p.add_argument(
        "--prompt-style",
        choices=rl.styles.STYLES,
        default=None,
        help="how games are worded (default: the style a trained policy records; builtin for the "
        "built-in model; spiral for any other checkpoint)",
    )
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mesh", default=None, help="device mesh, e.g. data=2,fsdp=4,tensor=1")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    samples = args.strategy_samples
    summary = sp.evaluate_study(
        args.model,
        args.out,
        games=tuple(args.games.split(",")),
        opponents=tuple(args.opponents.split(",")),
        frozen=args.frozen,
        games_per_slot=args.games_per_slot or (2 if args.quick else 20),
        slots=args.slots,
        generation=sp.GenerationConfig(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p if args.top_p < 1 else None,
        ),
        reasoning_files=args.reasoning,
        reasoning_items=args.reasoning_items or (16 if args.quick else None),
        reasoning_samples=args.reasoning_samples,
        strategy_samples=samples if samples is not None else (16 if args.quick else 64),
        dtype=args.dtype,
        seed=args.seed,
        mesh=parse_mesh(args.mesh),
        command=sys.argv,
        prompt_style=args.prompt_style,
    )
    print(markdown_table(summary["games"]))
    for b in summary["reasoning"]["benchmarks"]:
        print(f"{b['name']}: pass@1 {b['pass1']:.3f} +- {b['stderr']:.3f}, "
              f"{b['questions']} questions x {b['samples']}, {b['grader']}")  # fmt: skip
    total = summary["reasoning"]["overall"]
    print(f"reasoning overall: pass@1 {total['pass1']:.3f} +- {total['stderr']:.3f}")
    for game, worth in summary["strategies"].items():
        print(f"{game} strategy:\n{markdown_table(worth)}")


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
