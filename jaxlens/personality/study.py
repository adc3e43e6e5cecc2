"""The study end to end: score -> sample -> probe -> steer, one run folder per stage.

`run_study(model_dir, out_dir, roster=..., quick=True)` runs every stage on a roster and returns
the headline figures; each stage is also callable on its own (the scripts call them):

- `stage_score`: `score/` with `scores.jsonl` (appended, rerun skips done characters), trait
  scores per readout, and when the roster carries profiles (generated personas) the Spearman of
  each trait score with the profile level.
- `stage_sample`: `sample/` with the activation shards and manifest (`activations`).
- `stage_probe`: `probe/`: per trait and position a `jaxlens.probes.fit` of the trait score
  (from `StudyConfig.readout`) on the activations, groups = characters; R^2 and Spearman by
  layer, the trait cosine matrix at each trait's best layer, adjective AUC by layer, and
  `probes.npz` (every trait's fitted probe at the study's `position`, `jaxlens.probes.load`
  reads it back) and `probes_<position>.npz` for every position (`load_probes`: the steer
  stage run on its own steers along these).
- `stage_steer`: `steer/`: forced-choice and questionnaire sweeps for each recipe, with and
  without persona context (dose-response plots, on/off-target shift matrices; the
  questionnaire's item split, `questionnaire.item_split`, in `config.json`, each trait's probe
  position, band centre and strength scale chosen on the split's choose items in
  `choice_<recipe>.json`, the "last" recipe's unit in
  `mean_norms.json`) and open-ended generation scored by the probe (and a judge model if named).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

import jaxlens
import jaxlens.personality.activations as activations
import jaxlens.personality.plots as plots
import jaxlens.personality.questionnaire as questionnaire
import jaxlens.personality.scoring as scoring
import jaxlens.personality.steering as steering
from jaxlens import probes
from jaxlens.personality.items import TRAITS, trait_scores
from jaxlens.personality.personas import Character, default_roster
from jaxlens.runs import RunFolder, markdown_table, progress

READOUTS = ("ev", "argmax", "generated")
STEER_CHOICES = ("choose", "probe")


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Settings of every stage (see each stage). `quick()` is laptop-sized, `paper()` the
    published setting (all 50 items in the self-description, 10 instructions, the
    score-averaged regression). questionnaire: also read steering out on the IPIP-50 items;
    choose_items: items per trait settings are chosen on (1..9, the rest are measured);
    steer_choice: how the band recipe aims, "choose" (per trait the probe position, centre
    layer and strength scale, among `choose_scales`, that steer most specifically on those
    items: `questionnaire.choose_steering`) or "probe" (the `position` probe at its best
    layer, the recipe's strengths)."""

    score: scoring.ScoreConfig = field(default_factory=scoring.ScoreConfig)
    sample: activations.SampleConfig = field(default_factory=activations.SampleConfig)
    readout: str = "ev"
    position: str = "prompt_mean"
    method: str = "ridge"
    folds: int = 5
    test_fraction: float = 0.2
    recipes: tuple[steering.Recipe, ...] = (
        steering.Recipe(name="band"),
        steering.Recipe(name="last", strengths=(-0.4, -0.2, 0.0, 0.2, 0.4)),
    )
    orders: int = 10  # statement orders per trait: 10 puts each statement under each letter
    context: int = 2
    generated_picks: bool = True
    open_ended: int = 2
    judge: str | None = None
    questionnaire: bool = True
    choose_items: int = 5
    steer_choice: str = "choose"
    choose_scales: tuple[float, ...] = (1.0, 0.5)
    seed: int = 0

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"StudyConfig.readout={self.readout!r}: expected one of {READOUTS}")
        if self.position not in activations.POSITIONS:
            raise ValueError(
                f"StudyConfig.position={self.position!r}: expected one of {activations.POSITIONS}"
            )
        if self.method not in probes.METHODS:
            raise ValueError(
                f"StudyConfig.method={self.method!r}: expected one of {probes.METHODS}"
            )
        if self.steer_choice not in STEER_CHOICES:
            raise ValueError(
                f"StudyConfig.steer_choice={self.steer_choice!r}: expected one of {STEER_CHOICES}"
            )
        if not self.choose_scales or min(self.choose_scales) <= 0:
            raise ValueError(
                f"StudyConfig.choose_scales={self.choose_scales}: expected positive factors"
            )
        if not 1 <= self.choose_items <= 9:
            raise ValueError(f"StudyConfig.choose_items={self.choose_items}: expected 1..9")
        if self.orders < 1 or self.context < 0 or self.open_ended < 0:
            raise ValueError("StudyConfig: orders >= 1, context >= 0 and open_ended >= 0 expected")

    @classmethod
    def quick(cls, **kw) -> StudyConfig:
        base = dict(
            sample=activations.SampleConfig(
                instructions=4, adjective_instructions=1, max_new_tokens=16
            ),
            recipes=(steering.Recipe(name="band", strengths=(-0.3, 0.0, 0.3)),),
            orders=10,
            context=1,
            generated_picks=False,
            open_ended=0,
        )
        return cls(**{**base, **kw})

    @classmethod
    def paper(cls, **kw) -> StudyConfig:
        """The paper's setting: 50-item self-descriptions, its score-averaged regression."""
        base = dict(
            sample=activations.SampleConfig(items_per_trait=None, max_new_tokens=64),
            method="score_mean",
        )
        return cls(**{**base, **kw})


def stage_score(model, roster, out, config: StudyConfig, command=None) -> dict:
    run = RunFolder(out, config=config.score, command=command, resume=True)
    scoring.score_characters(
        model, roster, run / "scores.jsonl", config=config.score, progress=progress
    )
    s = scoring.read_scores(run / "scores.jsonl", roster)
    scores = {r: trait_scores(s[r]) for r in READOUTS if np.isfinite(s[r]).all()}
    rows = {"characters": len(roster), "option mass (mean)": float(s["mass"].mean())}
    profiles = [c.profile for c in roster]
    if all(p is not None for p in profiles):
        prof = np.array(profiles, np.float64)
        for r, ts in scores.items():
            for i, t in enumerate(TRAITS):
                rows[f"spearman {r} {t}"] = float(probes.spearman(ts[t], prof[:, i]))
        run.figure(
            "ev_vs_profile",
            plots.scatter(
                np.repeat(prof, 1, 0).ravel(),
                np.stack([scores["ev"][t] for t in TRAITS], 1).ravel(),
                "trait score (ev) vs profile level",
                "profile level",
                "trait score",
            ),
        )
    run.save_json(
        "trait_scores.json", {r: {t: v for t, v in ts.items()} for r, ts in scores.items()}
    )
    run.summary(rows)
    run.write_report("Scoring: IPIP-50 answers per character")
    return {"answers": s, "trait_scores": scores, "summary": rows}


def stage_sample(model, answers, out, config: StudyConfig, model_path="", command=None) -> Path:
    run = RunFolder(out, config=config.sample, command=command, resume=True)
    activations.sample(
        model,
        answers,
        run.path,
        config=config.sample,
        model_path=str(model_path),
        progress=progress,
    )
    manifest = run / "manifest.json"
    run.summary({"rows": sum(1 for _ in open(run / "prompts.jsonl")), "manifest": str(manifest)})
    run.write_report("Activation sampling")
    return run.path


def _fit_all(acts, rows, y_by_trait, config):
    persona = [i for i, r in enumerate(rows) if r["kind"] == "persona"]
    groups = np.array([rows[i]["character"] for i in persona])
    return {
        t: probes.fit(
            acts[:, persona],
            y_by_trait[t][groups],
            groups=groups,
            method=config.method,
            folds=config.folds,
            test_fraction=config.test_fraction,
            seed=config.seed,
        )
        for t in TRAITS
    }


def adjective_auc(acts, rows, fitted) -> dict[str, np.ndarray]:
    """Per trait, AUC by layer of the probe's readout: positive over negative adjectives."""
    out = {}
    for t, probe in fitted.items():
        pos = [
            i
            for i, r in enumerate(rows)
            if r["kind"] == "adjective" and r["trait"] == t and r["pole"] == "positive"
        ]
        neg = [
            i
            for i, r in enumerate(rows)
            if r["kind"] == "adjective" and r["trait"] == t and r["pole"] == "negative"
        ]
        if pos and neg:
            pred = probe.predict(acts[:, pos + neg])
            out[t] = probes.auc(pred[:, : len(pos)], pred[:, len(pos) :])
    return out


def _position_rows(position: str, fitted: dict[str, probes.Probe]) -> list[dict]:
    """One summary row per trait: its best layer and the held-out figures there."""
    return [
        {
            "position": position,
            "trait": t,
            "best layer": p.best_layer,
            "test spearman": float(p.test_spearman[p.best_layer]),
            "test r2": float(p.test_r2[p.best_layer]),
            "alpha": float(p.alpha[p.best_layer]),
        }
        for t, p in fitted.items()
    ]


def _probe_position(run: RunFolder, sample_dir, position, y_by_trait, config) -> dict:
    """Fits every trait's probe on the activations at `position`; logs and plots them."""
    acts, rows = activations.load(sample_dir, position)
    fitted = _fit_all(acts, rows, y_by_trait, config)
    for t, p in fitted.items():
        run.log(
            {"position": position, "trait": t, "test_spearman": p.test_spearman,
             "test_r2": p.test_r2}
        )  # fmt: skip
    for name, key, label in (("spearman", "test_spearman", "Spearman"), ("r2", "test_r2", "R^2")):
        run.figure(
            f"{name}_{position}",
            plots.by_layer(
                {t: getattr(p, key) for t, p in fitted.items()},
                f"held-out {label}",
                f"probe {label} by layer ({position})",
            ),
        )
    return fitted


def stage_probe(sample_dir, y_by_trait, out, config: StudyConfig, command=None) -> dict:
    """`probe/`: every trait's probe at every position (see the module docstring)."""
    run = RunFolder(
        out,
        config={"method": config.method, "position": config.position, "folds": config.folds},
        command=command,
    )
    results = {
        position: _probe_position(run, sample_dir, position, y_by_trait, config)
        for position in activations.POSITIONS
    }
    rows_out = [r for position, f in results.items() for r in _position_rows(position, f)]
    fitted = results[config.position]
    acts, rows = activations.load(sample_dir, config.position)
    problems = probe_warnings(acts, rows, y_by_trait, fitted)
    for message in problems:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    auc = adjective_auc(acts, rows, fitted)
    if auc:
        run.figure("adjective_auc", plots.by_layer(auc, "AUC", "adjective AUC by layer"))
    best = np.stack([fitted[t].directions[fitted[t].best_layer] for t in TRAITS])[:, None]
    cos = probes.cosines(best)[0]
    run.figure("trait_cosines", plots.matrix(cos, "cosine of trait directions (best layers)"))
    probes.save(run / "probes.npz", fitted)
    for position, at in results.items():  # the steer stage may aim with any position's probes
        probes.save(run / f"probes_{position}.npz", at)
    run.save_json("probe_metrics.json", rows_out)
    run.summary([r for r in rows_out if r["position"] == config.position])
    run.section("All positions", markdown_table(rows_out))
    if problems:
        run.section("Warnings", "\n".join(f"- {m}" for m in problems))
    run.write_report("Probes: trait score from activations, by layer")
    return {"probes": fitted, "all": results, "auc": auc, "cosines": cos, "rows": rows_out}


def load_probes(probe_dir, position: str) -> dict[str, dict[str, probes.Probe]]:
    """Every position's probes a probe stage saved (`probes_<position>.npz`), by position; a
    folder from before they were saved gives its `probes.npz` as `position`'s."""
    probe_dir = Path(probe_dir)
    found = {
        pos: probes.load(probe_dir / f"probes_{pos}.npz")
        for pos in activations.POSITIONS
        if (probe_dir / f"probes_{pos}.npz").exists()
    }
    if not found and (probe_dir / "probes.npz").exists():
        found = {position: probes.load(probe_dir / "probes.npz")}
    if position not in found:
        raise FileNotFoundError(
            f"{probe_dir}: no probes at position {position!r} (probes_{position}.npz); run the "
            "probe stage first"
        )
    return found


def _probe_keys(by_position) -> dict:
    return {pos: sorted(f) if isinstance(f, dict) else type(f).__name__
            for pos, f in by_position.items()}  # fmt: skip


def probe_warnings(acts, rows, y_by_trait, fitted) -> list[str]:
    """Why a trait's probe has no held-out Spearman at any layer, in words (one per trait).

    It happens on a model whose questionnaire answers do not tell characters apart (untrained
    weights, a model without a chat format): the scores or the activations are all equal.
    """
    acts = np.asarray(acts)
    by_instruction: dict = {}
    for i, r in enumerate(rows):
        if r["kind"] == "persona":
            by_instruction.setdefault(r.get("instruction"), []).append(i)
    tol = 1e-6 * float(np.abs(acts).max(initial=0.0))
    # every character's prompt under one instruction gives the same activations
    same_acts = all(np.ptp(acts[:, idx], axis=1).max() <= tol for idx in by_instruction.values())
    out = []
    for t, probe in fitted.items():
        if np.isfinite(probe.test_spearman).any():
            continue
        y = np.asarray(y_by_trait[t], np.float64)
        if np.ptp(y) == 0:
            why = f"every character has the same {t} score ({y[0]:g})"
        elif same_acts:
            why = (
                "under each instruction the activations are the same for every character (the "
                "model gave every character the same questionnaire answers, so their "
                "self-descriptions are equal)"
            )
        else:
            why = "the held-out scores or the probe's predictions are all equal"
        out.append(
            f"{t}: the held-out Spearman is undefined (nan) at every layer: {why}; the probe "
            "has nothing to find"
        )
    return out


READOUT_LABELS = {"from_probs": "forced choice", questionnaire.READOUT: "questionnaire"}


def _steer_summary(run: RunFolder, recipe, records, with_context: bool, readout) -> list[dict]:
    """Dose-response and shift-matrix plots of one recipe's sweep in one readout (without, and
    with persona context when there was any); one summary row per trait and context."""
    summary, label = [], READOUT_LABELS[readout]
    fig = "dose" if readout == "from_probs" else "questionnaire"
    ylabel = None if readout == "from_probs" else "mean keyed answer (1-5)"
    for ctx in (False, True) if with_context else (False,):
        curves = {t: steering.dose_response(records, t, t, ctx, readout) for t in TRAITS}
        where = "with persona context" if ctx else "no context"
        kind = "context" if ctx else "plain"
        extra = {"ylabel": ylabel, "ylim": None} if ylabel else {}
        run.figure(
            f"{fig}_{recipe.name}_{kind}",
            plots.dose_response(curves, f"{recipe.name}: {label} ({where})", "strength", **extra),
        )
        m = steering.shift_matrix(records, ctx, readout)
        run.figure(
            f"{fig}_shift_{recipe.name}_{kind}" if ylabel else f"shift_{recipe.name}_{kind}",
            plots.matrix(
                m, f"{recipe.name} {label} shift ({where})", xlabel="read trait",
                ylabel="steered trait",
            ),
        )  # fmt: skip
        summary += [
            {"readout": label, "recipe": recipe.name, "context": ctx, **row}
            for row in steering.summary_rows(records, ctx, readout)
        ]
    return summary


def _open_ended(run: RunFolder, model, aim: Aim, config: StudyConfig, judge, norms):
    """Open-ended replies along each trait's probe with the first recipe, scored."""
    recipe, opened = config.recipes[0], []
    for t in progress(TRAITS, desc="open-ended", unit="trait"):
        opened += steering.open_ended(
            model, aim.fitted[t], t, recipe, instructions=config.open_ended, judge=judge,
            layer=aim.layers.get(t), scale=aim.scales.get(t, 1.0), norms=norms,
            texts=config.sample.instruction_texts,
        )  # fmt: skip
    run.save_json("open_ended.json", opened)
    run.section(
        "Open-ended (probe readout by strength)",
        markdown_table([{k: v for k, v in r.items() if k != "replies"} for r in opened]),
    )
    return opened


class Aim(NamedTuple):
    """How a recipe steers each trait: its probe, the band's centre layer and the factor on the
    recipe's strengths (`layers` and `scales` empty: each probe's best layer, factor 1)."""

    fitted: dict[str, probes.Probe]
    layers: dict[str, int]
    scales: dict[str, float]
    positions: dict[str, str]


def _aim(run, model, by_position, recipe, split, config) -> Aim:
    """The band's aim per trait chosen on the choose items (`steer_choice="choose"`), else the
    study position's probes at their best layers."""
    fitted = by_position[config.position]
    if recipe.name != "band" or config.steer_choice == "probe":
        return Aim(fitted, {}, {}, {t: config.position for t in TRAITS})
    choices, scores = questionnaire.choose_steering(
        model, by_position, recipe, items=split.items("choose"), scales=config.choose_scales,
        progress=progress,
    )  # fmt: skip
    run.save_json(
        f"choice_{recipe.name}.json",
        {"choices": {t: c._asdict() for t, c in choices.items()}, "scales": config.choose_scales,
         "scores": scores},
    )  # fmt: skip
    return Aim(
        {t: by_position[c.position][t] for t, c in choices.items()},
        {t: c.layer for t, c in choices.items()},
        {t: c.scale for t, c in choices.items()},
        {t: c.position for t, c in choices.items()},
    )


def stage_steer(
    model, by_position, context: list[Character], out, config: StudyConfig, judge=None,
    command=None,
) -> dict:  # fmt: skip
    """`steer/`: forced-choice and questionnaire sweeps per recipe, open-ended replies (module
    docstring). `by_position`: `{position: {trait: Probe}}`, every position's probes (the probe
    stage's `"all"`, or `load_probes`); `config.position`'s are the study's, the others are
    candidates of `steer_choice="choose"`. The questionnaire's item split is in
    `config.json`."""
    complete = all(isinstance(f, dict) and set(f) == set(TRAITS) for f in by_position.values())
    if config.position not in by_position or not complete:
        raise ValueError(
            f"stage_steer: expected every trait's probe at position {config.position!r} "
            f"(and at any other position given); got {_probe_keys(by_position)}"
        )
    split = questionnaire.item_split(config.choose_items, config.seed)
    run = RunFolder(
        out,
        config={"recipes": config.recipes, "orders": config.orders, "context": len(context),
                "steer_choice": config.steer_choice, "item_split": split._asdict()},
        command=command,
    )  # fmt: skip
    # the "last" recipe's unit: mean residual norms over the measured items' prompts
    norms = steering.mean_norms(model, questionnaire.prompts(split.items("measure"), [])[0])
    run.save_json("mean_norms.json", norms.tolist())
    summary, all_records, quest, aims = [], {}, {}, {}
    for recipe in config.recipes:
        aim = aims[recipe.name] = _aim(run, model, by_position, recipe, split, config)
        where = dict(layers=aim.layers or None, scales=aim.scales or None, norms=norms)
        records = steering.sweep(
            model, aim.fitted, recipe, context=context, orders=config.orders,
            generated=config.generated_picks, progress=progress, **where,
        )  # fmt: skip
        all_records[recipe.name] = records
        for r in records:
            run.log({"recipe": recipe.name, **r})
        summary += _steer_summary(run, recipe, records, bool(context), "from_probs")
        if config.questionnaire:
            quest[recipe.name] = questionnaire.sweep(
                model, aim.fitted, recipe, items=split.items("measure"), context=context,
                progress=progress, **where,
            )  # fmt: skip
            summary += _steer_summary(
                run, recipe, quest[recipe.name], bool(context), questionnaire.READOUT
            )
    opened = (
        _open_ended(run, model, aims[config.recipes[0].name], config, judge, norms)
        if config.open_ended
        else []
    )
    run.save_json("forced_choice.json", all_records)
    run.save_json("questionnaire.json", quest)
    run.summary(summary)
    run.section(
        "Readouts",
        "Forced choice: the expected fraction of trait-positive picks (option probabilities). "
        "Questionnaire: the mean expected keyed Likert answer (1-5) over each trait's "
        f"measured IPIP-50 items ({len(split.items('measure'))} items; settings were chosen on "
        f"the other {len(split.items('choose'))}, split seed {split.seed}). Shifts: the largest "
        "strength's readout minus the smallest's; clean: positive, monotone and more than twice "
        "the mean |off-target| shift.",
    )
    run.write_report("Steering: forced choice, questionnaire and open-ended")
    return {"records": all_records, "questionnaire": quest, "summary": summary,
            "open_ended": opened, "aims": aims}  # fmt: skip


def run_study(
    model_dir, out_dir, *, roster=None, quick=True, mesh=None, config=None, command=None
) -> dict:
    """Every stage on `roster` (default: `personas.default_roster(model_dir)`, the bundled
    personas for the built-in model, else the well-known characters); returns the headline
    figures: probe Spearman per trait at its best layer, forced-choice and questionnaire
    steering shifts per trait without and with persona context."""
    roster = default_roster(model_dir) if roster is None else roster
    config = config or (StudyConfig.quick() if quick else StudyConfig())
    mesh = jaxlens.sharding.parse_mesh(mesh) if isinstance(mesh, str) else mesh
    model = jaxlens.load_model(model_dir, mesh=mesh)
    out = Path(out_dir)
    command = command or sys.argv
    scored = stage_score(model, roster, out / "score", config, command)
    answers = scored["answers"]["argmax"]
    sample_dir = stage_sample(model, answers, out / "sample", config, model_dir, command)
    y = scored["trait_scores"][config.readout]
    probed = stage_probe(sample_dir, y, out / "probe", config, command)
    judge = jaxlens.load_model(config.judge) if config.judge else None
    steered = stage_steer(
        model, probed["all"], roster[: config.context], out / "steer", config, judge, command
    )
    head = {
        "probe_spearman": {
            t: float(p.test_spearman[p.best_layer]) for t, p in probed["probes"].items()
        },
        "best_layer": {t: p.best_layer for t, p in probed["probes"].items()},
    }
    rec = config.recipes[0].name
    for prefix, label in (("steer", "forced choice"), ("questionnaire", "questionnaire")):
        for ctx in (False, True):
            rows = [
                r
                for r in steered["summary"]
                if r["recipe"] == rec and r["context"] == ctx and r["readout"] == label
            ]
            key = f"{prefix}_shift{'_context' if ctx else ''}"
            head[key] = {r["trait"]: r["on-target shift"] for r in rows}
            if prefix == "questionnaire":
                suffix = "_context" if ctx else ""
                head[f"questionnaire_off_target{suffix}"] = {
                    r["trait"]: r["mean |off-target|"] for r in rows
                }
                head[f"questionnaire_clean{suffix}"] = {r["trait"]: r["clean"] for r in rows}
    aim = steered["aims"][rec]
    head["steer_layer"] = aim.layers or head["best_layer"]
    head["steer_probe"] = aim.positions
    head["steer_scale"] = {t: aim.scales.get(t, 1.0) for t in TRAITS}
    head["score_spearman"] = {
        k.split()[-1]: v
        for k, v in scored["summary"].items()
        if k.startswith(f"spearman {config.readout}")
    }
    return head


def replace_config(config: StudyConfig, **kw) -> StudyConfig:
    return replace(config, **kw)
