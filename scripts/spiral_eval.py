r"""Evaluate a policy: games against fixed opponents (win / loss / draw / invalid rates and game
lengths per game and role) and the offline reasoning harness (boxed-answer accuracy).

    python3 scripts/spiral_eval.py --quick --out runs/spiral_eval      # the built-in model
    python3 scripts/spiral_eval.py --model runs/spiral/policy --opponents random,optimal,model \
        --frozen path/to/start_model --reasoning my_math.jsonl --out runs/spiral_eval

--reasoning defaults to the bundled arithmetic set (rl/data/arithmetic.jsonl). When Kuhn Poker is
among the games, the report adds the policy's betting table and what it is worth against random
and Nash play, exactly (--kuhn-samples replies per cell). See docs/spiral.md.
"""

from __future__ import annotations

import argparse
import sys

import jax

import jaxlens
import jaxlens.runs
import rl.opponents
import rl.reasoning
import rl.selfplay as sp
from jaxlens.runs import RunFolder, markdown_table
from rl.selfplay.run import default_model, parse_mesh


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=default_model(), help="HF directory (default: built-in)")
    p.add_argument("--out", default="runs/spiral_eval", help="run folder")
    p.add_argument("--quick", action="store_true", help="few games and reasoning items")
    p.add_argument("--games", default="tictactoe,kuhn_poker,negotiation")
    p.add_argument("--opponents", default="random,optimal", help="random,optimal,model")
    p.add_argument("--frozen", default=None, help="HF directory of the 'model' opponent")
    p.add_argument("--games-per-slot", type=int, default=None, help="games per slot and opponent")
    p.add_argument("--slots", type=int, default=12)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument(
        "--reasoning", default=str(rl.reasoning.BUNDLED), help="JSONL (question, answer)"
    )
    p.add_argument("--reasoning-items", type=int, default=None, help="evaluate only the first N")
    p.add_argument(
        "--kuhn-samples",
        type=int,
        default=None,
        help="replies sampled per Kuhn Poker betting node and card for the strategy table "
        "(default 64, 16 with --quick; 0 skips it)",
    )
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mesh", default=None, help="device mesh, e.g. data=2,fsdp=4,tensor=1")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.model is None:
        raise SystemExit("--model: no built-in model in this installation; pass an HF directory")
    mesh = parse_mesh(args.mesh)
    config, params = jaxlens.load_hf(args.model, mesh=mesh, dtype=args.dtype)
    tokenizer = jaxlens.load_tokenizer(args.model, config=config)
    gen = sp.GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    policy = sp.ModelPolicy(config, tokenizer, gen, mesh=mesh)
    frozen = jaxlens.load_hf(args.frozen, mesh=mesh, dtype=args.dtype)[1] if args.frozen else params
    per_slot = args.games_per_slot or (2 if args.quick else 20)
    run = RunFolder(args.out, config=vars(args), command=sys.argv)
    key = jax.random.PRNGKey(args.seed)
    rows = []
    opponents = args.opponents.split(",")
    for i, opp in enumerate(jaxlens.runs.progress(opponents, desc="opponents", unit="opp")):
        rows += sp.evaluate.evaluate(
            policy,
            params,
            jax.random.fold_in(key, i),
            opponent=opp,
            games=tuple(args.games.split(",")),
            slots=args.slots,
            games_per_slot=per_slot,
            opponent_params=frozen,
        )
    items = rl.reasoning.load_jsonl(args.reasoning)
    limit = args.reasoning_items or (16 if args.quick else None)
    items = items[:limit] if limit else items
    result = rl.reasoning.evaluate_policy(
        policy, params, jax.random.fold_in(key, 99), items, rows=args.slots
    )
    run.save_json("games.json", rows)
    run.save_json(
        "reasoning.json",
        {
            "accuracy": result.accuracy,
            "boxed_rate": result.boxed_rate,
            "n": result.n,
            "replies": result.replies,
        },
    )
    run.summary(
        [
            {
                k: r[k]
                for k in (
                    "opponent",
                    "game",
                    "role",
                    "n",
                    "win",
                    "loss",
                    "draw",
                    "invalid",
                    "moves",
                    "reply_tokens",
                )
            }
            for r in rows
        ]
    )
    run.section(
        "Reasoning",
        markdown_table(
            {
                "file": args.reasoning,
                "items": result.n,
                "accuracy": result.accuracy,
                "boxed_rate": result.boxed_rate,
            }
        ),
    )
    if "kuhn_poker" in args.games.split(","):
        samples = args.kuhn_samples if args.kuhn_samples is not None else (16 if args.quick else 64)
        if samples:
            kuhn_section(run, policy, params, jax.random.fold_in(key, 98), samples)
    run.write_report("SPIRAL evaluation")
    print(markdown_table(rows))
    print(
        f"reasoning accuracy {result.accuracy:.3f} on {result.n} items "
        f"(boxed {result.boxed_rate:.2f})"
    )


def kuhn_section(run, policy, params, key, samples):
    """The policy's Kuhn Poker strategy table and what it is worth against random and Nash."""
    strategy = sp.evaluate.kuhn_strategy(policy, params, key, samples=samples)
    nodes = ("bet, opening", "bet, after a check", "call a bet", "call after check-bet")
    rows = [
        {
            "node": name,
            **{card: float(p) for card, p in zip("JQK", strategy["table"][i], strict=True)},
        }
        for i, name in enumerate(nodes)
    ]
    report = sp.evaluate.kuhn_strategy_report(strategy["table"])
    nash = sp.evaluate.kuhn_strategy_report(rl.opponents.KuhnNash().aggressive())
    worth = [
        {"player": name, **{k: round(v, 4) for k, v in figures.items()}}
        for name, figures in (("policy", report), ("Nash", nash))
    ]
    run.save_json(
        "kuhn_strategy.json", {"samples": samples, **{k: v.tolist() for k, v in strategy.items()}}
    )
    run.section(
        "Kuhn Poker strategy",
        f"How often the policy bets or calls with each card in a fresh game ({samples} replies "
        "per cell), and what that table is worth, exactly, in chips per round and in 5-round "
        "games (`rl.selfplay.evaluate.kuhn_strategy_report`).\n\n"
        + markdown_table(rows)
        + "\n\n"
        + markdown_table(worth),
    )
    print(markdown_table(worth))


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
