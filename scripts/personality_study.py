r"""The Big Five personality study: score, sample activations, fit probes, steer.

    python3 scripts/personality_study.py --quick                    # built-in model, bundled roster
    python3 scripts/personality_study.py --model DIR --out runs/big5 --mesh data=4,fsdp=8 \
        --paper --instructions alpaca_data.json      # the published setting, 440 known characters
    python3 scripts/personality_study.py --stage probe --out runs/big5   # one stage again
    python3 scripts/personality_study.py --stage steer --out runs/big5   # along probe/probes.npz
    python3 scripts/personality_study.py --plan v5p-64               # memory plan for 70B, no model

Stages write one run folder each under --out (score/, sample/, probe/, steer/) with config,
JSONL results, plots and report.md. Scoring and sampling append to disk and skip finished work
on a rerun. The roster is JSON (a list of {character, franchise[, description]}) or CSV with
those columns; by default the bundled personas for the built-in model and the bundled 440
well-known characters for any other. --instructions reads Alpaca-format JSON or JSONL
(instruction, optional input) and draws --n-instructions of them (seeded); by default the
bundled 10. See docs/personality.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import jaxlens
import jaxlens.runs
from jaxlens import probes
from jaxlens.personality import default_roster, load_instructions, load_roster, plan, scoring, study
from jaxlens.personality.items import trait_scores

STAGES = ("all", "score", "sample", "probe", "steer")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=jaxlens.BUILTIN_MODEL, help="HF checkpoint dir")
    p.add_argument("--roster", type=Path, default=None, help="roster JSON/CSV (default: bundled)")
    p.add_argument("--out", type=Path, default=Path("runs/personality"), help="output folder")
    p.add_argument("--stage", choices=STAGES, default="all")
    p.add_argument("--quick", action="store_true", help="small settings (minutes on a laptop)")
    p.add_argument("--paper", action="store_true", help="paper settings (50-item descriptions)")
    p.add_argument("--mesh", default=None, help="e.g. data=4,fsdp=8,tensor=1")
    p.add_argument("--judge", type=Path, default=None, help="judge model dir for open-ended")
    p.add_argument("--readout", choices=study.READOUTS, default="ev")
    p.add_argument(
        "--method",
        choices=probes.METHODS,
        default=None,
        help="probe regression (default: score_mean with --paper, else ridge)",
    )
    p.add_argument(
        "--instructions",
        type=Path,
        default=None,
        help="Alpaca-format JSON/JSONL of instructions (default: the bundled 10)",
    )
    p.add_argument(
        "--steer-choice",
        choices=study.STEER_CHOICES,
        default="choose",
        help="band steering: choose each trait's probe position, layer and strength scale on "
        "half of its IPIP-50 items (default), or the probe's own best layer",
    )
    p.add_argument("--n-instructions", type=int, default=10, help="instructions drawn (seeded)")
    p.add_argument("--seed", type=int, default=0, help="instruction draw and item split seed")
    p.add_argument("--plan", choices=tuple(plan.SETTINGS), default=None, help="print memory plan")
    return p.parse_args(argv)


def study_config(args: argparse.Namespace) -> study.StudyConfig:
    """The preset (--quick, --paper or the default) with the flags' settings."""
    base = (
        study.StudyConfig.quick
        if args.quick
        else study.StudyConfig.paper
        if args.paper
        else study.StudyConfig
    )
    config = base(readout=args.readout, judge=str(args.judge) if args.judge else None,
                  seed=args.seed, steer_choice=args.steer_choice,
                  **({"method": args.method} if args.method else {}))  # fmt: skip
    if args.instructions:
        texts = load_instructions(args.instructions, args.n_instructions, seed=args.seed)
        sample = dataclasses.replace(config.sample, texts=texts, instructions=len(texts))
        config = dataclasses.replace(config, sample=sample)
    return config


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.plan:
        print(plan.report(args.plan))
        return None
    config = study_config(args)
    roster = load_roster(args.roster) if args.roster else None
    if args.stage == "all":
        head = study.run_study(
            args.model, args.out, roster=roster, config=config, mesh=args.mesh, command=sys.argv
        )
        print(json.dumps(head, indent=1))
        return head
    roster = roster or default_roster(args.model)
    model = (
        None
        if args.stage == "probe"
        else jaxlens.load_model(args.model, mesh=jaxlens.sharding.parse_mesh(args.mesh))
    )
    out = args.out
    if args.stage == "score":
        study.stage_score(model, roster, out / "score", config, sys.argv)
        return None
    scores = out / "score" / "scores.jsonl"
    if args.stage == "sample":
        answers = scoring.read_scores(scores, roster)["argmax"]
        study.stage_sample(model, answers, out / "sample", config, args.model, sys.argv)
        return None
    saved = out / "probe"
    if args.stage == "steer" and (saved / "probes.npz").exists():
        # steer along the probe stage's directions, not a refit
        by_position = study.load_probes(saved, config.position)
        print(f"steering along the probes in {saved}")
    else:
        y = trait_scores(scoring.read_scores(scores, roster)[config.readout])
        by_position = study.stage_probe(out / "sample", y, saved, config, sys.argv)["all"]
    if args.stage == "steer":
        judge = jaxlens.load_model(args.judge) if args.judge else None
        study.stage_steer(
            model,
            by_position,
            roster[: config.context],
            out / "steer",
            config,
            judge,
            sys.argv,
        )
    return None


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
