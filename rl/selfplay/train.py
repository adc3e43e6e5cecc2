"""The SPIRAL training loop: rollout -> RAE -> PPO update, with evaluation and checkpoints.

Each step:

1. `rollout.collect` plays until `samples_per_step` policy turns of finished games are held
   (self-play by default: one policy, both seats), with the params the learner holds;
2. `rl.rae.advantages` turns each finished game's returns into one advantage per (game, role)
   of the policy, given to every turn of that player in that game; zero advantages are dropped
   (with `batch_fill="nonzero"`, SPIRAL's, play goes on - further `collect` calls, the baselines
   carried in order - until `samples_per_step` non-zero ones are held; `"once"` trains on what
   the first collection left, possibly fewer),
   and when more than `samples_per_step` are left, that many are drawn at random (without
   replacement, from the step's own key: SPIRAL's draw) - `sample_draw="first"` keeps the
   first ones instead, which favours short games;
3. `learner.update` runs `ppo.epochs` PPO-clip updates on the batch;
4. every `eval_every` steps the policy plays fixed opponents (`evaluate`), every
   `checkpoint_every` steps (and on SIGTERM, and at the end) the state is checkpointed.

The state that makes a resume exact: learner params and Adam state, the PRNG key of the rollout
stream (each step splits it into the next key and the rollout's key; the sample draw's key is
folded from the rollout's), the step and the baselines (`checkpoint`). Evaluation draws its keys
from a separate stream (`fold_in(eval_key, step)`), so evaluating does not change training.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

import jaxlens
from rl import rae, styles
from rl.selfplay import checkpoint, evaluate, learner, rollout
from rl.selfplay.learner import PPOConfig
from rl.selfplay.policy import GenerationConfig
from rl.selfplay.rollout import RolloutConfig

SAMPLE_DRAWS = ("random", "first")
BATCH_FILLS = ("nonzero", "once")
MAX_EXTRA_COLLECTS = 16  # "nonzero": at most this many further collections a step
# fold_in tags of the draw's and the further collections' keys, far from the split counters
_DRAW_STREAM = 0x5A3D
_FILL_STREAM = 0x3C000000


class TrainError(ValueError):
    """Bad training settings."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpiralConfig:
    """A SPIRAL run; the defaults are SPIRAL's Kuhn Poker run (docs/spiral.md has the table).

    Attributes:
      steps: learner steps (400).
      samples_per_step: policy turns per batch (128).
      rollout: what is played (Kuhn Poker, SPIRAL's `spiral_v1` scoring, self-play, 16 games
        side by side).
      generation: how training replies are sampled (temperature 1.0, up to 4096 new tokens).
      ppo: the learner (`PPOConfig()`: lr 1e-6, Adam (0.9, 0.95), clip 0.2, 2 epochs, no KL).
      baseline: RAE mode of `rl.rae.advantages` ("role"; ablations "global", "none").
      alpha: RAE EMA decay (0.95).
      batch_fill: "nonzero" (SPIRAL: play on until `samples_per_step` non-zero-advantage
        samples are held, at most `MAX_EXTRA_COLLECTS` further collections) or "once" (one
        collection of `samples_per_step` samples; its zero-advantage ones dropped).
      sample_draw: which of more than `samples_per_step` non-zero-advantage samples train:
        "random" (SPIRAL: a seeded draw without replacement) or "first" (collection order).
      seed: seeds the rollout and evaluation streams.
      eval_every: evaluate every this many steps (16; 0: only before and after).
      eval_opponents: opponents of the evaluation games ("random", "optimal", "model"; SPIRAL
        plays a random agent and a fixed strong model: here the game's optimal player).
      eval_games_per_slot: evaluation games per slot and opponent (1: 16 games on 16 slots).
      eval_sampling: how the policy samples in evaluation games (SPIRAL: temperature 0.6,
        top-p 0.95; None: as in training).
      checkpoint_every: checkpoint every this many steps (0: only at the end / on SIGTERM).
      keep_checkpoints: checkpoints kept on disk.
      prompt_style: how the games are worded to the policy and its replies checked, in training
        and evaluation alike (`rl.styles`): "spiral" (SPIRAL's template around TextArena's
        observation text, SPIRAL's check) or "builtin" (this project's wording, which the
        built-in model was trained on). None: chosen by the checkpoint when a run starts
        (`for_model`, `rl.styles.default_style`: "builtin" for the built-in model, "spiral" for
        any other). A name given here is also `rollout.prompt_style`.
    """

    steps: int = 400
    samples_per_step: int = 128
    rollout: RolloutConfig = RolloutConfig(
        games=("kuhn_poker",), slots=16, env_options={"kuhn_poker": {"variant": "spiral_v1"}}
    )
    generation: GenerationConfig = GenerationConfig(max_new_tokens=4096, temperature=1.0)
    ppo: PPOConfig = PPOConfig()
    baseline: str = "role"
    alpha: float = 0.95
    batch_fill: str = "nonzero"
    sample_draw: str = "random"
    seed: int = 0
    eval_every: int = 16
    eval_opponents: tuple[str, ...] = ("random", "optimal")
    eval_games_per_slot: int = 1
    eval_sampling: jaxlens.Sampling | None = evaluate.EVAL_SAMPLING
    checkpoint_every: int = 16
    keep_checkpoints: int = 2
    prompt_style: str | None = None

    def __post_init__(self):
        if self.prompt_style is not None:
            try:
                styles.check_style(self.prompt_style, "SpiralConfig.prompt_style")
                roll = dataclasses.replace(self.rollout, prompt_style=self.prompt_style)
            except (styles.StyleError, rollout.RolloutError) as e:
                raise TrainError(str(e)) from None
            object.__setattr__(self, "rollout", roll)
        for name in ("steps", "samples_per_step", "eval_games_per_slot", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TrainError(f"SpiralConfig.{name}={value!r}: expected an int >= 1")
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise TrainError(f"SpiralConfig.{name}={value!r}: expected an int >= 0")
        if self.eval_sampling is not None and not isinstance(self.eval_sampling, jaxlens.Sampling):
            raise TrainError(
                f"SpiralConfig.eval_sampling={self.eval_sampling!r}: expected a jaxlens.Sampling "
                "or None"
            )
        if self.batch_fill not in BATCH_FILLS:
            raise TrainError(
                f"SpiralConfig.batch_fill={self.batch_fill!r}: expected one of {BATCH_FILLS}"
            )
        if self.sample_draw not in SAMPLE_DRAWS:
            raise TrainError(
                f"SpiralConfig.sample_draw={self.sample_draw!r}: expected one of {SAMPLE_DRAWS}"
            )
        if self.baseline not in rae.BASELINES:
            raise TrainError(f"SpiralConfig.baseline={self.baseline!r}: expected {rae.BASELINES}")
        bad = [o for o in self.eval_opponents if o not in evaluate.EVAL_OPPONENTS]
        if bad:
            raise TrainError(
                f"SpiralConfig.eval_opponents has {bad}: expected some of {evaluate.EVAL_OPPONENTS}"
            )

    def check_model(self, model_config: jaxlens.ModelConfig) -> None:
        """Raises `TrainError` when the model's context cannot hold a prompt and the longest
        reply (`generation.max_new_tokens`): checked when a run starts, not at the first turn."""
        cap = self.generation.max_new_tokens
        if cap >= model_config.max_seq_len:
            raise TrainError(
                f"SpiralConfig.generation.max_new_tokens={cap} leaves no room for a prompt in "
                f"the model's max_seq_len={model_config.max_seq_len}: expected fewer new tokens "
                "(SpiralConfig.quick() or GenerationConfig(max_new_tokens=...))"
            )

    def for_model(self, model_dir: Any) -> SpiralConfig:
        """This config with its prompt style settled for the checkpoint in `model_dir`
        (`prompt_style`, or when None `rl.styles.default_style(model_dir)`). A style chosen so
        plays each game in a version it can word (`rl.styles.worded_options`: Kuhn Poker's
        "standard" variant, e.g. `quick()`'s, as SPIRAL's "spiral_v1" in the "spiral" style)."""
        if self.prompt_style is not None:
            return self
        style = styles.default_style(model_dir)
        roll = self.rollout
        options = styles.worded_options(style, roll.games, roll.env_options)
        roll = dataclasses.replace(roll, env_options=options)
        return dataclasses.replace(self, rollout=roll, prompt_style=style)

    @classmethod
    def quick(cls, **overrides: Any) -> SpiralConfig:
        """A CPU-sized run for the built-in model (minutes, not hours): all three built-in games
        (standard Kuhn Poker rules), one collection of 48 samples a step, 48-token replies,
        lr 2e-5 with the token mean, evaluated against random play before and after only."""
        base = dict(
            steps=8,
            samples_per_step=48,
            rollout=RolloutConfig(slots=12),
            generation=GenerationConfig(max_new_tokens=48),
            ppo=PPOConfig(lr=2e-5, normalize="token_mean", micro_batch=16),
            batch_fill="once",
            eval_every=0,
            eval_opponents=("random",),
            eval_games_per_slot=4,
            checkpoint_every=4,
        )
        return cls(**{**base, **overrides})


@struct.dataclass
class TrainState:
    learner: learner.LearnerState
    key: jax.Array  # uint32 [2]: the rollout stream
    step: jax.Array  # int32 []


def advantages_of(roll: rollout.Rollout, baselines: dict, cfg: SpiralConfig):
    """Per-sample advantages (from RAE over the finished games, in order) and new baselines."""
    entries = [
        (ep.returns[s], ep.game, s, e) for e, ep in enumerate(roll.episodes) for s in ep.model_seats
    ]
    if not entries:
        return np.zeros(0, np.float32), baselines
    rets, games, roles, _ = zip(*entries, strict=True)
    adv, baselines = rae.advantages(
        rets, games, roles, baselines, alpha=cfg.alpha, baseline=cfg.baseline
    )
    by = {(e, s): a for (_, _, s, e), a in zip(entries, adv, strict=True)}
    per_sample = np.array([by[(s.episode, s.role)] for s in roll.samples], np.float32)
    return per_sample, baselines


def choose_samples(adv: np.ndarray, cfg: SpiralConfig, key: jax.Array) -> np.ndarray:
    """Indices of the samples that train (sorted): the non-zero advantages, and of those, when
    more than `samples_per_step`, a draw without replacement seeded by `key` ("random") or the
    first ones ("first")."""
    nonzero = np.flatnonzero(adv != 0)
    if len(nonzero) <= cfg.samples_per_step or cfg.sample_draw == "first":
        return nonzero[: cfg.samples_per_step]
    order = np.asarray(jax.random.permutation(key, len(nonzero)))
    return np.sort(nonzero[order[: cfg.samples_per_step]])


def make_batch(roll, adv, cfg: SpiralConfig, pad_id: int, key: jax.Array):
    """The learner batch of the chosen samples (`choose_samples`) and their count."""
    keep = choose_samples(adv, cfg, key)
    if not len(keep):
        return None, 0
    s = [roll.samples[i] for i in keep]
    batch = learner.pack(
        [x.prompt_ids for x in s],
        [x.response_ids for x in s],
        [x.logprobs for x in s],
        adv[keep],
        micro_batch=cfg.ppo.micro_batch,
        rows=cfg.samples_per_step,
        multiple_of=128,  # few width buckets: each compiles the update once
        pad_id=pad_id,
    )
    return batch, len(keep)


def step_metrics(roll: rollout.Rollout, adv: np.ndarray, baselines: dict) -> dict[str, Any]:
    """What one rollout says: returns per (game, role), invalid rate, reply lengths, timing."""
    out: dict[str, Any] = {"episodes": len(roll.episodes), "samples": len(roll.samples)}
    lens = [len(s.response_ids) for s in roll.samples]
    out["reply_tokens"] = float(np.mean(lens)) if lens else 0.0
    out["invalid_rate"] = float(np.mean([not s.valid for s in roll.samples])) if lens else 0.0
    out["zero_adv_frac"] = float(np.mean(adv == 0)) if len(adv) else 0.0
    for ep_game in sorted({e.game for e in roll.episodes}):
        eps = [e for e in roll.episodes if e.game == ep_game]
        out[f"{ep_game}/return_p0"] = float(np.mean([e.returns[0] for e in eps]))
        out[f"{ep_game}/moves"] = float(np.mean([e.moves for e in eps]))
    out.update({f"baseline/{g}/{r}": v for (g, r), v in baselines.items()})
    out.update({f"time/{k}": v for k, v in roll.timing.items()})
    return out


def _shard_batch(batch: learner.Batch, mesh: Any) -> learner.Batch:
    if mesh is None:
        return jax.tree.map(jnp.asarray, batch)
    from jax.sharding import NamedSharding, PartitionSpec

    m = batch.tokens.shape[1]
    axes = tuple(a for a in ("data", "fsdp") if mesh.shape[a] > 1)
    size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    spec = PartitionSpec(None, axes) if axes and m % size == 0 else PartitionSpec()
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, spec)), batch)


def init_state(params: Any, cfg: SpiralConfig, *, model_config: Any, mesh: Any = None):
    if mesh is not None:
        params = jaxlens.shard_params(params, model_config, mesh)
    lstate = learner.init_state(params, cfg.ppo)
    return TrainState(learner=lstate, key=jax.random.PRNGKey(cfg.seed), step=jnp.int32(0))


class _Stop:
    """SIGTERM -> finish the current step, checkpoint, return."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, *_):
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _start(policy: Any, params: Any, cfg: SpiralConfig, mesh: Any, opponent_params: Any):
    """(fresh state, KL reference params or None, the frozen "model" opponent's params)."""
    state = init_state(params, cfg, model_config=policy.config, mesh=mesh)
    model_opponent = opponent_params is None and "model" in cfg.eval_opponents
    start = None
    if cfg.ppo.kl_coef or model_opponent:
        # one copy of the start policy (same shardings): `learner.update` donates the learner's
        # own buffers, so the KL reference and the frozen opponent cannot alias them
        start = jax.tree.map(lambda x: jnp.array(x, copy=True), state.learner.params)
    if model_opponent:
        opponent_params = learner.compute_params(start, cfg.ppo)
    return state, (start if cfg.ppo.kl_coef else None), opponent_params


def _learn(policy, lstate, batch, ref, cfg: SpiralConfig, mesh: Any):
    """One `learner.update` on a packed batch (no update when nothing was kept)."""
    if batch is None:
        return lstate, {}
    batch = _shard_batch(batch, mesh)
    if ref is not None:
        batch = batch.replace(
            ref_logprobs=learner.reference_logprobs(ref, batch, config=policy.config, ppo=cfg.ppo)
        )
    lstate, metrics = learner.update(lstate, batch, config=policy.config, ppo=cfg.ppo)
    return lstate, {k: float(v) for k, v in jax.device_get(metrics).items()}


def collect_batch(policy, params, key, baselines: dict, cfg: SpiralConfig, opponent_params):
    """The step's rollout and per-sample advantages: one `collect` of `samples_per_step`, then
    (`batch_fill="nonzero"`) more, with keys `fold_in(key, _FILL_STREAM + i)`, until as many
    non-zero advantages are held. Returns (rollout, advantages, new baselines)."""

    def more(k, n):
        return rollout.collect(
            policy, params, k, config=cfg.rollout, min_samples=n, opponent_params=opponent_params
        )

    roll = more(key, cfg.samples_per_step)
    adv, baselines = advantages_of(roll, baselines, cfg)
    for i in range(MAX_EXTRA_COLLECTS if cfg.batch_fill == "nonzero" else 0):
        short = cfg.samples_per_step - int(np.count_nonzero(adv))
        if short <= 0:
            break
        extra = more(jax.random.fold_in(key, _FILL_STREAM + i), short)
        extra_adv, baselines = advantages_of(extra, baselines, cfg)
        roll, adv = rollout.concat(roll, extra), np.concatenate([adv, extra_adv])
    return roll, adv, baselines


def train_step(
    policy: Any,
    state: TrainState,
    baselines: dict,
    cfg: SpiralConfig,
    *,
    ref: Any = None,
    mesh: Any = None,
    opponent_params: Any = None,
) -> tuple[TrainState, dict, dict[str, Any]]:
    """Rollout, advantages and one PPO update: (next state, baselines, the step's record)."""
    step = int(state.step)
    t0 = time.perf_counter()
    key, k_roll = jax.random.split(state.key)
    k_draw = jax.random.fold_in(k_roll, _DRAW_STREAM)  # the rollout's own stream is unchanged
    gen = learner.compute_params(state.learner.params, cfg.ppo)
    roll, adv, baselines = collect_batch(policy, gen, k_roll, baselines, cfg, opponent_params)
    batch, used = make_batch(roll, adv, cfg, policy.pad_id, k_draw)
    t1 = time.perf_counter()
    lstate, metrics = _learn(policy, state.learner, batch, ref, cfg, mesh)
    state = TrainState(learner=lstate, key=key, step=jnp.int32(step + 1))
    record = {
        "step": step + 1,
        "trained_samples": used,
        **metrics,
        **step_metrics(roll, adv, baselines),
        "time/learn": time.perf_counter() - t1,
        "time/step": time.perf_counter() - t0,
    }
    return state, baselines, record


def train(
    policy: Any,
    params: Any,
    cfg: SpiralConfig,
    *,
    checkpoint_dir: Any,
    log: Callable[[dict], None] = lambda record: None,
    mesh: Any = None,
    opponent_params: Any = None,
    on_step: Callable[[int], None] | None = None,
    progress: Any = None,
) -> tuple[TrainState, dict, list[dict]]:
    """Run (or resume) training; returns (final state, baselines, evaluation rows)."""
    state, ref, opponent_params = _start(policy, params, cfg, mesh, opponent_params)
    mgr = checkpoint.manager(checkpoint_dir, keep=cfg.keep_checkpoints)
    baselines: dict = {}
    if checkpoint.latest(mgr) is not None:
        state, baselines, _ = checkpoint.restore(mgr, state)
        if progress is not None:
            jaxlens.runs.resume_progress(progress, int(state.step))
    eval_key = jax.random.PRNGKey(cfg.seed + 1_000_003)
    evals: list[dict] = []
    with _Stop() as stop:
        while int(state.step) < cfg.steps:
            state, baselines, record = train_step(
                policy, state, baselines, cfg, ref=ref, mesh=mesh, opponent_params=opponent_params
            )
            step = int(state.step)
            if cfg.eval_every and step % cfg.eval_every == 0:
                rows = run_evals(
                    policy, state, cfg, jax.random.fold_in(eval_key, step), opponent_params
                )
                evals += [dict(r, step=step) for r in rows]
                record.update(
                    {f"eval/{r['opponent']}/{r['game']}/{r['role']}/win": r["win"] for r in rows}
                )
            log(record)
            if progress is not None:
                progress.update(1)
            if on_step is not None:
                on_step(step)
            due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if due or stop.requested or step == cfg.steps:
                checkpoint.save(mgr, step, state, baselines)
            if stop.requested:
                break
    mgr.close()
    return state, baselines, evals


def run_evals(policy, state: TrainState, cfg: SpiralConfig, key, opponent_params=None):
    """Evaluation rows of `state`'s policy against each of `cfg.eval_opponents`."""
    gen = learner.compute_params(state.learner.params, cfg.ppo)
    rows = []
    for i, opp in enumerate(cfg.eval_opponents):
        rows += evaluate.evaluate(
            policy,
            gen,
            jax.random.fold_in(key, i),
            opponent=opp,
            games=cfg.rollout.games,
            slots=cfg.rollout.slots,
            games_per_slot=cfg.eval_games_per_slot,
            opponent_params=opponent_params,
            env_options=cfg.rollout.env_options,
            sampling=cfg.eval_sampling,
            prompt_style=cfg.rollout.prompt_style,
        )
    return rows
