"""The main job: the three studies on the built-in model, in about ten minutes on a laptop CPU.

    python3 scripts/quickstart.py                       # all three, runs/quickstart/index.html
    python3 scripts/quickstart.py --quick               # the reduced smoke run (the test's)
    python3 scripts/quickstart.py --model path/to/hf_dir --mesh data=1,fsdp=4,tensor=2
    python3 scripts/quickstart.py --stages sae,spiral   # a subset

Stages (each writes its own run folder under --out, with report.md, summary.json and figures):

- personality: scores a roster of characters on the IPIP-50 questionnaire, samples the model's
  activations in character, fits per-layer Big Five probes, and steers along the probe
  directions, read out on forced choice and on the questionnaire's own items, with and without
  a persona in context (`jaxlens.personality.run_study`);
- sae: a TopK SAE on every layer, the cross-layer statistics (which features pass, vanish or
  appear from one layer to the next) and the static feature browser (`sae.evolution`);
- spiral: a short SPIRAL self-play run on the three games, evaluated against a random player
  before and after training on the same games, and against the start model after training
  (`rl.selfplay.run_study`).

The root folder gets `index.html` (open it in any browser: headline figures, every plot, links
to each stage's report and to the feature browser, the command, versions and time taken),
`headline.png`, `report.md` and `summary.json`; the terminal ends with the headline tables,
each with a note on how to read it (what the figure is, how many games a win rate is over). A
failed stage is shown as failed in the index and makes the exit status 1; the others still run.
On several hosts every process runs this same command (`jaxlens.distributed.maybe_initialize`
starts JAX's distributed runtime from the launcher's environment); process 0 writes the index.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from pathlib import Path

import jaxlens
import jaxlens.runs
from jaxlens.runs import index as run_index

STAGES = ("personality", "sae", "spiral")
TITLES = {
    "personality": "Personality: Big Five probes and steering",
    "sae": "SAE features across layers",
    "spiral": "SPIRAL self-play",
}
# Stage sizes per preset. "laptop" (the default) is sized for about ten minutes on 2 idle CPU
# cores from the CPU time of the quick run (docs/quickstart.md); "quick" is the smoke run;
# "paper" hands each study its own full-size configuration (for real checkpoints on accelerators).
PRESETS = ("quick", "laptop", "paper")
SAE_SIZES = {
    "quick": dict(n_docs=60, n_windows=64, sae_steps=60, sae_batch=256, expansion=2),
    "laptop": dict(n_docs=100, n_windows=128, sae_steps=120, sae_batch=512, expansion=4),
}
SPIRAL_STEPS = {"quick": 1, "laptop": 4, "paper": None}
# Evaluation games per slot and opponent (12 slots over the three games): the smoke run plays
# one wave, enough to check every artifact; the laptop run four (16 games per game).
SPIRAL_EVAL_GAMES = {"quick": 1, "laptop": 4}
# Characters the personality study scores: a ridge probe over the built-in model's 256 dimensions
# needs ~200 characters to fit on and to test against; the smoke run keeps the bundled 40.
ROSTER_SIZES = {"quick": None, "laptop": 200, "paper": None}  # None: the bundled roster


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=jaxlens.BUILTIN_MODEL,
                   help="HF checkpoint directory (default: the built-in model)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"),
                   help="root run folder (default: runs/quickstart)")  # fmt: skip
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)}")  # fmt: skip
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default="laptop",
        help="stage sizes: quick (the test's smoke run), laptop (~10 min on 2 CPU\n"
        "cores), paper (each study's full-size settings, for real checkpoints)",
    )
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--mesh", default=None,
                   help="device mesh, e.g. data=2,fsdp=4,tensor=1 (default: no mesh)")  # fmt: skip
    p.add_argument(
        "--spiral-steps",
        type=int,
        default=None,
        help="SPIRAL learner steps (default: quick 1, laptop 4, paper the study's)",
    )
    args = p.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        p.error(f"--stages {args.stages!r}: expected a comma-separated subset of {STAGES}")
    args.stages = tuple(s for s in STAGES if s in stages)
    if args.spiral_steps is not None and args.spiral_steps < 1:
        p.error(f"--spiral-steps {args.spiral_steps}: expected an int >= 1")
    if args.quick:
        args.preset = "quick"
    args.quick = args.preset == "quick"
    return args


# --- the stages: each runs one study and returns (headline tables, extra links) ---------------


def run_personality(model: Path, out: Path, args, mesh):
    import jaxlens.personality as personality
    import jaxlens.personality.study as study

    size = ROSTER_SIZES[args.preset]
    roster = personality.bundled_roster() if size is None else personality.make_roster(size)
    config = None
    if args.preset == "quick":  # the smoke run: the band at each probe's best layer, no sweep
        config = study.StudyConfig.quick(steer_choice="probe")
    head = personality.run_study(model, out, roster=roster, quick=args.preset != "paper",
                                 mesh=mesh, config=config)  # fmt: skip
    rows = [
        {
            "trait": t,
            "probe Spearman": head["probe_spearman"][t],
            "best layer": head["best_layer"][t],
            "steering shift": head["steer_shift"].get(t),
            "shift with persona": head["steer_shift_context"].get(t),
            "questionnaire shift": head["questionnaire_shift"].get(t),
            "questionnaire with persona": head["questionnaire_shift_context"].get(t),
            "questionnaire off-target": head["questionnaire_off_target"].get(t),
            "steered along": _aim_label(head, t),
        }
        for t in personality.TRAITS
    ]
    caption = "probe Spearman (best layer) and steering shifts per trait"
    note = (
        "Probe Spearman: held-out characters' trait scores against the probe's readout. "
        "Steering shift: the change in the forced-choice readout (the share of the trait's "
        "positive statements picked, from option probabilities) from the most negative to the "
        "most positive steering strength (-1 .. 1). Questionnaire shift: the same change in the "
        "mean expected keyed answer (1-5) over the trait's held-out IPIP-50 items (half of each "
        "trait's items; the probe position, layer and strength scale steered along were chosen on "
        "the other half, column 'steered along'), without and with a "
        "persona card; off-target: the mean |shift| of the other four traits' answers."
    )
    if any(math.isnan(r["probe Spearman"]) for r in rows):
        note += " nan: the probe had nothing to fit; personality/probe/report.md says why."
    if model.resolve() == Path(jaxlens.BUILTIN_MODEL).resolve():
        note += (
            " The built-in model's forced-choice picks do not follow a persona at all "
            "(docs/builtin_model.md), so steering has nothing to move there: a forced-choice "
            "shift near 0 is its true result; its questionnaire answers do follow a persona, "
            "and steering moves them."
        )
    return (run_index.Table(caption, tuple(rows), note=note),), ()


def _aim_label(head: dict, t: str) -> str:
    """Where a trait was steered, e.g. "gen_mean L0 x0.5" (probe position, layer, scale)."""
    layer = head["steer_layer"][t]
    return f"{head['steer_probe'][t]} L{layer} x{head['steer_scale'][t]:g}"


def run_sae(model: Path, out: Path, args, mesh):
    import sae.evolution as evolution

    if args.preset == "paper":
        cfg = evolution.EvolutionConfig.full()
    else:
        cfg = evolution.EvolutionConfig.quick(**SAE_SIZES[args.preset])
    head = evolution.run_study(model, out, quick=args.preset != "paper", mesh=mesh, config=cfg)
    ev = [{"layer": i, "explained variance": v} for i, v in enumerate(head["explained_variance"])]
    turnover = [
        {"pair": r["pair"], "passed": r["passed@0.95"], "vanished": 1.0 - r["passed@0.95"],
         "new": r["new@0.95"]}
        for r in head["turnover"]
    ]  # fmt: skip
    ev_note = "Each layer's SAE on held-out activations: 1 is a perfect reconstruction."
    turnover_note = (
        "Passed: the share of layer l's live latents whose best Pearson partner in layer l+1 "
        "reaches 0.95; vanished: the rest; new: the share of layer l+1's live latents with no "
        "such partner in layer l."
    )
    tables = (
        run_index.Table("SAE explained variance per layer", tuple(ev), note=ev_note),
        run_index.Table("feature turnover per layer pair (Pearson >= 0.95)", tuple(turnover),
                        note=turnover_note),
    )  # fmt: skip
    browser = Path(head["browser"]).resolve().relative_to(args.out.resolve())
    return tables, (("feature browser", browser.as_posix()),)


def run_spiral(model: Path, out: Path, args, mesh):
    import rl.selfplay

    steps = args.spiral_steps if args.spiral_steps is not None else SPIRAL_STEPS[args.preset]
    config = None
    if args.preset in SPIRAL_EVAL_GAMES:
        config = rl.selfplay.SpiralConfig.quick(
            eval_games_per_slot=SPIRAL_EVAL_GAMES[args.preset],
            # the smoke run evaluates as it trains (one program less to compile)
            **({"eval_sampling": None} if args.preset == "quick" else {}),
        )
    head = rl.selfplay.run_study(model, out, steps=steps, quick=args.preset != "paper",
                                 mesh=mesh, config=config, command=sys.argv)  # fmt: skip
    rows = [
        {"game": g, "games": head["games"].get(g), "vs random before": r["before"],
         "vs random after": r["after"], "vs start model after": head["win_vs_start"].get(g)}
        for g, r in head["win_vs_random"].items()
    ]  # fmt: skip
    fewest = min(head["games"].values())
    games = f"{fewest}" if len(set(head["games"].values())) == 1 else f"at least {fewest}"
    note = (
        f"Win rates over both seats, {games} games per cell: one standard error is up to "
        f"+-{0.5 / fewest**0.5:.2f}, so a change smaller than about twice that is noise "
        "(docs/spiral.md has a run long enough to measure learning). Against the start model, "
        "an unchanged policy wins as often as it loses."
    )
    caption = f"win rate after {head['steps']} self-play steps"
    return (run_index.Table(caption, tuple(rows), note=note),), ()


RUN = {"personality": run_personality, "sae": run_sae, "spiral": run_spiral}


# --- the end: headline figure, root report, index, terminal table ----------------------------


def headline_figure(stages: list[run_index.Stage]):
    """One panel per headline table that has a numeric column, as grouped bars.

    A table with a `games` column holds rates over that many games: its bars get binomial
    standard-error whiskers, so the figure shows which differences are noise.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tables = [t for s in stages for t in s.tables if t.rows]
    if not tables:
        return None
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.7), squeeze=False)
    for ax, table in zip(axes[0], tables, strict=True):
        label, *values = list(table.rows[0])
        values = [v for v in values if all(isinstance(r.get(v), float) for r in table.rows)]
        x = np.arange(len(table.rows))
        width = 0.8 / max(len(values), 1)
        for j, col in enumerate(values):
            heights = np.array([r[col] for r in table.rows])
            n = np.array([r.get("games") or 0 for r in table.rows], np.float64)
            err = np.sqrt(heights * (1 - heights) / n) if n.all() else None
            ax.bar(x + j * width - 0.4 + width / 2, heights, width, yerr=err, capsize=2,
                   label=col)  # fmt: skip
        ax.set_xticks(x, [str(r[label]) for r in table.rows], fontsize=8)
        ax.set_title(table.caption, fontsize=9)
        ax.axhline(0, color="k", linewidth=0.5)
        if len(values) > 1:  # below the axes: inside, it hides bars whatever their signs
            legend_below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.1), "frameon": False}
            ax.legend(fontsize=7, ncol=len(values), **legend_below)
    fig.tight_layout()
    return fig


def finish(root: jaxlens.runs.RunFolder, stages: list[run_index.Stage], *, seconds: float) -> None:
    fig = headline_figure(stages)
    if fig is not None:
        root.figure("headline", fig)
    root.summary([{"stage": s.name, "status": s.status, "seconds": round(s.seconds, 1)}
                  for s in stages])  # fmt: skip
    for s in stages:
        for t in s.tables:
            table = jaxlens.runs.markdown_table(list(t.rows))
            root.section(f"{s.name}: {t.caption}", f"{table}\n\n{t.note}" if t.note else table)
    root.save_json("headline.json", {s.name: [{"caption": t.caption, "rows": list(t.rows),
                                               "note": t.note}
                                              for t in s.tables] for s in stages})  # fmt: skip
    root.write_report("quickstart")
    index = run_index.write_index(
        root.path, stages, title="jaxlens quickstart", command=root.command,
        versions=jaxlens.runs.versions(), started=root.started, seconds=seconds,
        headline_figure="headline.png" if fig is not None else None,
        intro="The three studies of jaxlens on one model: a Big Five personality study "
        "(probes and steering), SAE features across layers, and SPIRAL self-play.",
    )  # fmt: skip
    for s in stages:
        print(f"\n== {s.title}: {s.status} in {s.seconds:.0f} s")
        for t in s.tables:
            print(run_index.table_text(t))
    print(f"\ntotal {seconds:.0f} s; open {index.resolve().as_uri()}")


def preflight(args) -> None:
    """Refuses now what a later stage would refuse only after the stages before it ran: the
    paper preset's SPIRAL replies (4096 tokens) need a model with a longer context."""
    if "spiral" in args.stages and args.preset == "paper":
        import rl.selfplay

        rl.selfplay.SpiralConfig().check_model(jaxlens.hf.load_config(args.model))


def main(argv=None) -> int:
    jaxlens.distributed.maybe_initialize()  # before anything touches the devices
    args = parse_args(argv)
    import jax

    if not args.model.is_dir():
        raise FileNotFoundError(
            f"--model {str(args.model)!r} is not a directory: expected a Hugging Face checkpoint "
            "directory (the built-in model is written by scripts/train_builtin.py)"
        )
    preflight(args)
    mesh = jaxlens.sharding.parse_mesh(args.mesh)
    root = jaxlens.runs.RunFolder(args.out, config=args, command=sys.argv)
    t0 = time.monotonic()
    stages = []
    for i, name in enumerate(args.stages):
        print(f"[{i + 1}/{len(args.stages)}] {TITLES[name]}", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            tables, links = RUN[name](args.model, args.out / name, args, mesh)
            result = dict(status="ok", tables=tables, links=links)
        except Exception:  # a failed stage is reported; the others still run
            traceback.print_exc()
            result = dict(status="failed", error=traceback.format_exc())
        seconds = time.monotonic() - start
        root.log({"stage": name, "status": result["status"], "seconds": seconds})
        stages.append(run_index.Stage(name=name, title=TITLES[name], folder=name,
                                      seconds=seconds, **result))  # fmt: skip
    if jax.process_index() == 0:
        finish(root, stages, seconds=time.monotonic() - t0)
    return 0 if all(s.status == "ok" for s in stages) else 1


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
