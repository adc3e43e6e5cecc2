"""One call for a whole SPIRAL run: load, evaluate, train, evaluate, plot, export, report.

    headline = rl.selfplay.run(model_dir, out_dir, steps=8, quick=True)
    headline["win_vs_random"]  # {game: {"before": 0.31, "after": 0.38}}
    headline["win_vs_start"]   # {game: 0.55}: the trained policy against the start policy

The run folder (`jaxlens.runs.RunFolder`) gets `config.json`, `metrics.jsonl` (one record per
step, evaluation rows included), `evals.json`, plots of returns, invalid rate and reply length
over steps, `checkpoints/` (orbax; a second call with the same `out_dir` resumes), `policy/` (the
trained policy as an HF directory with its tokenizer) and `report.md`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import jaxlens
import jaxlens.runs
from rl.selfplay import learner, train
from rl.selfplay.policy import ModelPolicy
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


def export(out: Path, config: Any, params: Any, tokenizer: Any) -> Path:
    """The policy as an HF checkpoint directory (`jaxlens.save_hf` + the tokenizer)."""
    out.mkdir(parents=True, exist_ok=True)
    jaxlens.save_hf(out, config, params)
    tokenizer.save_pretrained(out)
    return out


def run(
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
    cfg = config or (SpiralConfig.quick() if quick else SpiralConfig())
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=steps)
    model_config, params = jaxlens.load_hf(model_dir, mesh=mesh, dtype=dtype)
    tokenizer = jaxlens.load_tokenizer(model_dir, config=model_config)
    policy = ModelPolicy(model_config, tokenizer, cfg.generation, mesh=mesh)
    out = Path(out_dir)
    resume = (out / "checkpoints").is_dir()
    folder = jaxlens.runs.RunFolder(
        out,
        config={"model": str(model_dir), **_cfg_dict(cfg)},
        command=command or sys.argv,
        resume=resume,
    )
    key = jax.random.PRNGKey(cfg.seed + 7)
    start = train.init_state(params, cfg, model_config=model_config, mesh=mesh)
    # The start policy, copied before training (the learner donates its own buffers): the
    # frozen opponent the trained policy is measured against at the end.
    start_policy = jax.tree.map(
        lambda x: jnp.array(x, copy=True), learner.compute_params(start.learner.params, cfg.ppo)
    )
    fixed = tuple(o for o in cfg.eval_opponents if o != "model")  # the start vs itself: skip
    before = train.run_evals(policy, start, dataclasses.replace(cfg, eval_opponents=fixed), key)
    bar = jaxlens.runs.progress(total=cfg.steps, desc="spiral", unit="step")
    state, baselines, evals = train.train(
        policy,
        params,
        cfg,
        checkpoint_dir=out / "checkpoints",
        log=folder.log,
        mesh=mesh,
        opponent_params=start_policy,
        progress=bar,
    )
    bar.close()
    after = train.run_evals(
        policy,
        state,
        dataclasses.replace(cfg, eval_opponents=(*fixed, "model")),
        key,
        opponent_params=start_policy,
    )
    folder.save_json("evals.json", {"before": before, "after": after, "during": evals})
    trained = learner.compute_params(state.learner.params, cfg.ppo)
    export(out / "policy", model_config, trained, tokenizer)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]
    _plots(folder, records)
    headline = _headline(before, after, int(state.step))
    folder.summary(
        [
            {"game": g, "opponent": o, "win_before": b, "win_after": a}
            for (o, g), (b, a) in headline["table"].items()
        ]
    )
    from jaxlens.runs import markdown_table

    folder.section("Evaluation before", markdown_table(before))
    folder.section("Evaluation after", markdown_table(after))
    folder.section(
        "Baselines", markdown_table({f"{g}/{r}": v for (g, r), v in baselines.items()} or {"-": 0})
    )
    folder.write_report("SPIRAL self-play")
    headline.pop("table")
    return headline


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


def parse_mesh(spec: str | None) -> Any:
    """A `--mesh data=N,fsdp=N,tensor=N` string as a mesh (see `jaxlens.sharding.parse_mesh`)."""
    return jaxlens.sharding.parse_mesh(spec)


def default_model() -> str | None:
    """The built-in model's directory when the package ships one, else None."""
    path = getattr(jaxlens, "BUILTIN_MODEL", None)
    return str(path) if path is not None and Path(path).is_dir() else None
