"""The self-play study's entry points: one call trains and reports, one call evaluates.

    headline = rl.selfplay.run_study(model_dir, out_dir, steps=8, quick=True)
    headline["win_vs_random"]  # {game: {"before": 0.31, "after": 0.38}}
    headline["win_vs_start"]   # {game: 0.55}: the trained policy against the start policy

    summary = rl.selfplay.evaluate_study(policy_dir, out_dir, opponents=("random", "optimal"))

`run_study` loads the model (`jaxlens.load_model`), evaluates it, trains it by self-play,
evaluates again with the same keys and against its start, and writes a run folder
(`jaxlens.runs.RunFolder`): `config.json`, `metrics.jsonl` (one record per step, evaluation rows
included), `evals.json`, plots of returns, invalid rate and reply length over steps,
`checkpoints/` (orbax; a second call with the same `out_dir` resumes), `policy/` (the trained
policy as an HF directory with its tokenizer and the prompt style it was trained in,
`rl.styles.STYLE_FILE`) and `report.md`. The prompt style is settled for the checkpoint
(`SpiralConfig.for_model`) and recorded in `config.json`.

`evaluate_study` plays a policy against fixed opponents, runs reasoning benchmarks from local
files (`rl.benchmarks`: pass@1 with its standard error, math graded by math-verify) and, for
every game that registers a `rl.envs.Strategy` (Kuhn Poker), reads
the policy's strategy table and what it is worth; its run folder holds `games.json`,
`reasoning.json`, `<game>_strategy.json` and `report.md`. Its games are prompted in the
policy's style (`rl.styles.default_style`: the one a trained policy records, "builtin" for the
built-in model, "spiral" for any other checkpoint) unless `prompt_style` says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import jaxlens
import jaxlens.runs
from jaxlens.runs import markdown_table
from rl import benchmarks, envs, reasoning, styles
from rl.selfplay import evaluate, learner, train
from rl.selfplay.policy import GenerationConfig, ModelPolicy
from rl.selfplay.train import SpiralConfig


def _plots(run: Any, records: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for key in sorted({k for r in records for k in r if k.endswith("/return_p0")}):
        axes[0].plot(steps, [r.get(key, float("nan")) for r in records], label=key.split("/")[0])
    axes[0].set_title("self-play return of player 0")
    axes[0].legend(fontsize=7)
    axes[1].plot(steps, [r.get("invalid_rate", float("nan")) for r in records])
    axes[1].set_title("invalid reply rate")
    axes[2].plot(steps, [r.get("reply_tokens", float("nan")) for r in records])
    axes[2].set_title("mean reply tokens")
    for ax in axes:
        ax.set_xlabel("step")
    run.figure("training", fig)
    evals = [(r["step"], k, v) for r in records for k, v in r.items() if k.startswith("eval/")]
    if evals:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name in sorted({k for _, k, _ in evals if k.endswith("/all/win")}):
            pts = [(s, v) for s, k, v in evals if k == name]
            ax.plot(*zip(*pts, strict=True), marker="o", label=name.split("/")[1:3])
        ax.set_title("win rate during training")
        ax.legend(fontsize=7)
        run.figure("win_rates", fig)


def export(
    out: Path, config: Any, params: Any, tokenizer: Any, prompt_style: str | None = None
) -> Path:
    """The policy as an HF checkpoint directory (`jaxlens.save_hf` + the tokenizer), with the
    prompt style it plays in when given (`rl.styles.write_style`)."""
    out.mkdir(parents=True, exist_ok=True)
    jaxlens.save_hf(out, config, params)
    tokenizer.save_pretrained(out)
    if prompt_style is not None:
        styles.write_style(out, prompt_style)
    return out


def _study_config(config: SpiralConfig | None, quick: bool, steps: int | None) -> SpiralConfig:
    cfg = config or (SpiralConfig.quick() if quick else SpiralConfig())
    return cfg if steps is None else dataclasses.replace(cfg, steps=steps)


def _frozen_copy(state: train.TrainState, cfg: SpiralConfig) -> Any:
    """The start policy's params, copied (the learner donates its own buffers)."""
    params = learner.compute_params(state.learner.params, cfg.ppo)
    return jax.tree.map(lambda x: jnp.array(x, copy=True), params)


def run_study(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    steps: int | None = None,
    quick: bool = True,
    mesh: Any = None,
    config: SpiralConfig | None = None,
    command: Any = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Train `model_dir` by self-play into `out_dir`; returns the headline figures.

    `config` defaults to `SpiralConfig.quick()` (or `SpiralConfig()` when not `quick`); `steps`
    overrides its step count; `dtype` is the params' and compute dtype the model is loaded in
    (float32: exact PPO ratios on CPU; "bfloat16" halves memory on accelerators). Win rates
    against the config's fixed opponents (random, optimal) are measured before and after with
    the same evaluation keys, and the trained policy also plays the start policy (a frozen
    copy kept through the run).
    """
    cfg = _study_config(config, quick, steps).for_model(model_dir)
    model = jaxlens.load_model(model_dir, mesh=mesh, dtype=dtype)
    cfg.check_model(model.config)
    policy = ModelPolicy.of(model, cfg.generation)
    out = Path(out_dir)
    folder = jaxlens.runs.RunFolder(
        out,
        config={"model": str(model_dir), **_cfg_dict(cfg)},
        command=command or sys.argv,
        resume=(out / "checkpoints").is_dir(),
    )
    key = jax.random.PRNGKey(cfg.seed + 7)
    start = train.init_state(model.params, cfg, model_config=model.config, mesh=mesh)
    start_policy = _frozen_copy(start, cfg)  # the opponent the trained policy meets at the end
    fixed = tuple(o for o in cfg.eval_opponents if o != "model")  # the start vs itself: skip
    before = train.run_evals(policy, start, dataclasses.replace(cfg, eval_opponents=fixed), key)
    bar = jaxlens.runs.progress(total=cfg.steps, desc="spiral", unit="step")
    state, baselines, evals = train.train(
        policy,
        model.params,
        cfg,
        checkpoint_dir=out / "checkpoints",
        log=folder.log,
        mesh=mesh,
        opponent_params=start_policy,
        progress=bar,
    )
    bar.close()
    after_cfg = dataclasses.replace(cfg, eval_opponents=(*fixed, "model"))
    after = train.run_evals(policy, state, after_cfg, key, opponent_params=start_policy)
    folder.save_json("evals.json", {"before": before, "after": after, "during": evals})
    trained = learner.compute_params(state.learner.params, cfg.ppo)
    export(out / "policy", model.config, trained, model.tokenizer, cfg.rollout.prompt_style)
    headline = _headline(before, after, int(state.step))
    _study_report(folder, headline.pop("table"), before, after, baselines)
    return headline


def _study_report(folder: Any, table: dict, before: list, after: list, baselines: dict) -> None:
    """Plots, the summary table and the report of a `run_study` folder."""
    records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x]
    _plots(folder, records)
    folder.summary(
        [
            {"game": g, "opponent": o, "win_before": b, "win_after": a}
            for (o, g), (b, a) in table.items()
        ]
    )
    folder.section("Evaluation before", markdown_table(before))
    folder.section("Evaluation after", markdown_table(after))
    folder.section(
        "Baselines", markdown_table({f"{g}/{r}": v for (g, r), v in baselines.items()} or {"-": 0})
    )
    folder.write_report("SPIRAL self-play")


def _headline(before: list[dict], after: list[dict], steps: int) -> dict[str, Any]:
    """Win rates over both seats, per (opponent, game): before and after training."""
    pick = lambda rows: {(r["opponent"], r["game"]): r for r in rows if r["role"] == "all"}
    b, a = pick(before), pick(after)
    table = {k: (b[k]["win"] if k in b else None, r["win"]) for k, r in a.items()}
    return {
        "steps": steps,
        "win_vs_random": {
            g: {"before": v[0], "after": v[1]} for (o, g), v in table.items() if o == "random"
        },
        "win_vs_start": {g: v[1] for (o, g), v in table.items() if o == "model"},
        "games": {g: r["n"] for (o, g), r in a.items() if o == "model"},
        "table": table,
    }


def _cfg_dict(cfg: SpiralConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


# ---- evaluation ------------------------------------------------------------------------------

EVAL_GENERATION = GenerationConfig(
    temperature=evaluate.EVAL_SAMPLING.temperature, top_p=evaluate.EVAL_SAMPLING.top_p
)
REASONING_COLUMNS = ("name", "kind", "questions", "samples", "pass1", "stderr", "boxed_rate",
                     "grader")  # fmt: skip
GAME_COLUMNS = ("opponent", "game", "role", "n", "win", "loss", "draw", "invalid", "moves",
                "reply_tokens")  # fmt: skip


def evaluate_study(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    games: Sequence[str] = envs.BUILTIN,
    opponents: Sequence[str] = ("random", "optimal"),
    frozen: str | Path | None = None,
    games_per_slot: int = 20,
    slots: int = 12,
    generation: GenerationConfig = EVAL_GENERATION,
    reasoning_files: str | Path | Sequence[str | Path] = (reasoning.BUNDLED,),
    reasoning_items: int | None = None,
    reasoning_samples: int = 1,
    strategy_samples: int = 64,
    dtype: str = "float32",
    seed: int = 0,
    mesh: Any = None,
    command: Any = None,
    prompt_style: str | None = None,
) -> dict[str, Any]:
    """Evaluate the policy in `model_dir` into `out_dir` (see the module docstring).

    `generation` samples every reply (games, reasoning, strategy readouts; default SPIRAL's
    evaluation: temperature 0.6, top-p 0.95). The "model" opponent plays the params in `frozen`
    (default: the policy's own). `reasoning_files` are local benchmark files
    (`rl.benchmarks.load`: JSONL or parquet, the usual field names), `reasoning_items` keeps the
    first N items of each, `reasoning_samples` replies per question (pass@1 over them). Keys:
    the i-th opponent's games use `fold_in(key, i)`, the reasoning benchmarks
    `fold_in(key, 99)`, the strategy readouts `fold_in(key, 98)`, `97`, ...
    (`key = PRNGKey(seed)`). `prompt_style` words the games (None: the policy's,
    `rl.styles.default_style(model_dir)`); in the "spiral" style each game is SPIRAL's version
    (`rl.styles.env_options`: Kuhn Poker as `spiral_v1`). `strategy_samples=0` skips the
    strategy readouts. Returns `{"games": rows, "reasoning": {"benchmarks": [...], "overall":
    {...}}, "strategies": {game: worth rows}}`.
    """
    if isinstance(reasoning_files, (str, Path)):
        reasoning_files = (reasoning_files,)
    style = styles.check_style(prompt_style or styles.default_style(model_dir))
    settings = dict(model=model_dir, games=games, opponents=opponents, frozen=frozen, slots=slots,
                    games_per_slot=games_per_slot, generation=generation, dtype=dtype, seed=seed,
                    reasoning=[str(f) for f in reasoning_files], reasoning_items=reasoning_items,
                    reasoning_samples=reasoning_samples,
                    strategy_samples=strategy_samples, prompt_style=style)  # fmt: skip
    model = jaxlens.load_model(model_dir, mesh=mesh, dtype=dtype)
    policy = ModelPolicy.of(model, generation)
    other = jaxlens.load_model(frozen, mesh=mesh, dtype=dtype).params if frozen else model.params
    run = jaxlens.runs.RunFolder(out_dir, config=settings, command=command or sys.argv)
    key = jax.random.PRNGKey(seed)
    rows = []
    for i, opp in enumerate(jaxlens.runs.progress(list(opponents), desc="opponents", unit="opp")):
        rows += evaluate.evaluate(
            policy,
            model.params,
            jax.random.fold_in(key, i),
            opponent=opp,
            games=tuple(games),
            slots=slots,
            games_per_slot=games_per_slot,
            opponent_params=other,
            sampling=None,  # `generation`'s
            env_options={g: styles.env_options(style, g) for g in games},
            prompt_style=style,
        )
    run.save_json("games.json", rows)
    run.summary([{k: r[k] for k in GAME_COLUMNS} for r in rows])
    found = _reasoning_section(
        run,
        policy,
        model.params,
        jax.random.fold_in(key, 99),
        [benchmarks.load(f, limit=reasoning_items) for f in reasoning_files],
        reasoning_samples,
        slots,
    )
    strategies = {}
    readable = [g for g in games if envs.get(g).strategy is not None] if strategy_samples else []
    for i, game in enumerate(readable):
        k = jax.random.fold_in(key, 98 - i)
        strategies[game] = _strategy_section(
            run, policy, model.params, k, game, strategy_samples, style
        )
    run.write_report("SPIRAL evaluation")
    return {"games": rows, "reasoning": found, "strategies": strategies}


def _reasoning_section(run, policy, params, key, benches, samples: int, rows: int) -> dict:
    """Each benchmark's pass@1 (`rl.benchmarks`; the j-th with key `fold_in(key, j)`) and the
    overall mean: `reasoning.json` and a report section; returns the figures."""
    results = [
        benchmarks.evaluate_policy(
            policy, params, jax.random.fold_in(key, j), b, samples=samples, rows=rows
        )
        for j, b in enumerate(jaxlens.runs.progress(benches, desc="reasoning", unit="set"))
    ]
    figures = [{k: r._asdict()[k] for k in REASONING_COLUMNS} for r in results]
    total = benchmarks.overall(results)
    run.save_json(
        "reasoning.json",
        {"benchmarks": [dict(f, replies=r.replies) for f, r in zip(figures, results, strict=True)],
         "overall": total},
    )  # fmt: skip
    mean_row = {k: "" for k in REASONING_COLUMNS}
    mean_row.update(
        name="overall (mean of the benchmarks)",
        pass1=total["pass1"],
        stderr=total["stderr"],
        questions=sum(r.questions for r in results),
    )
    table = figures + [mean_row]
    run.section(
        "Reasoning",
        "pass@1 over the samples of each question, with its standard error over questions; "
        "SPIRAL's evaluation prompt, the last \\boxed{} graded (`rl.benchmarks`).\n\n"
        + markdown_table(table),
    )
    return {"benchmarks": figures, "overall": total}


def _strategy_section(run, policy, params, key, game: str, samples: int, style: str) -> list:
    """The policy's strategy table in `game` and what it is worth beside the references."""
    spec = envs.get(game).strategy
    read = evaluate.read_strategy(
        policy, params, key, game=game, samples=samples, prompt_style=style
    )
    rows = [
        {"position": name, **dict(zip(spec.columns, map(float, cells), strict=True))}
        for name, cells in zip(spec.rows, read["table"], strict=True)
    ]
    worth = [
        {"player": name, **{k: round(v, 4) for k, v in spec.worth(table).items()}}
        for name, table in (("policy", read["table"]), *spec.references.items())
    ]
    run.save_json(
        f"{game}_strategy.json", {"samples": samples, **{k: v.tolist() for k, v in read.items()}}
    )
    run.section(
        f"{envs.get(game).title} strategy",
        spec.description.format(samples=samples)
        + "\n\n"
        + markdown_table(rows)
        + "\n\n"
        + markdown_table(worth),
    )
    return worth
