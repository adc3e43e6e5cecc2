"""SPIRAL self-play on the model core: rollout, role-conditioned advantages, PPO, evaluation.

    import rl.selfplay as sp
    headline = sp.run_study(model_dir, out_dir, steps=8, quick=True)  # train, evaluate, export
    summary = sp.evaluate_study(policy_dir, out_dir, opponents=("random", "optimal"))

- `policy`: `ModelPolicy` (chat template + `jaxlens.generate`; `ModelPolicy.of(loaded_model)`),
  `GenerationConfig`.
- `rollout`: `collect` plays batches of games of any registered types turn by turn (self-play
  or vs random / optimal / frozen-model opponents) and returns per-turn `Sample`s and
  `Episode`s.
- `learner`: the PPO-clip loss on response tokens, micro-batched, optax Adam (`PPOConfig`).
- `evaluate`: win / loss / draw / invalid rates per game and role against fixed opponents;
  `read_strategy`, a policy's strategy table in a game that registers one.
- `checkpoint`: orbax save / restore of the whole training state (exact resume).
- `train`: the loop (`SpiralConfig`, `train`, `train_step`).
- `study`: the study's entry points, `run_study` (load, evaluate, train, evaluate, plot,
  export, report) and `evaluate_study` (games, reasoning benchmarks, strategy tables).
The advantages are `rl.rae.advantages`.
"""

from rl.selfplay import checkpoint, evaluate, learner, policy, rollout, study, train
from rl.selfplay.evaluate import win_rates
from rl.selfplay.learner import PPOConfig
from rl.selfplay.policy import GenerationConfig, ModelPolicy
from rl.selfplay.rollout import RolloutConfig, collect
from rl.selfplay.study import evaluate_study, run_study
from rl.selfplay.train import SpiralConfig

__all__ = [
    "GenerationConfig",
    "ModelPolicy",
    "PPOConfig",
    "RolloutConfig",
    "SpiralConfig",
    "checkpoint",
    "collect",
    "evaluate",
    "evaluate_study",
    "learner",
    "policy",
    "rollout",
    "run_study",
    "study",
    "train",
    "win_rates",
]
