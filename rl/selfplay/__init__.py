"""SPIRAL self-play on the model core: rollout, role-conditioned advantages, PPO, evaluation.

    import rl.selfplay as sp
    headline = sp.run(model_dir, out_dir, steps=8, quick=True)   # train + evaluate + export

- `policy`: `ModelPolicy` (chat template + `jaxlens.generate`), `GenerationConfig`.
- `rollout`: `collect` plays batches of games of several types turn by turn (self-play or vs
  random / optimal / frozen-model opponents) and returns per-turn `Sample`s and `Episode`s.
- `learner`: the PPO-clip loss on response tokens, micro-batched, optax Adam (`PPOConfig`).
- `evaluate`: win / loss / draw / invalid rates per game and role against fixed opponents.
- `checkpoint`: orbax save / restore of the whole training state (exact resume).
- `train`: the loop (`SpiralConfig`, `train`); `run` wraps it with a run folder and export.
The advantages are `rl.rae.advantages`.
"""

from rl.selfplay import checkpoint, evaluate, learner, policy, rollout, train
from rl.selfplay.evaluate import win_rates
from rl.selfplay.learner import PPOConfig
from rl.selfplay.policy import GenerationConfig, ModelPolicy
from rl.selfplay.rollout import RolloutConfig, collect
from rl.selfplay.run import run
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
    "learner",
    "policy",
    "rollout",
    "run",
    "train",
    "win_rates",
]
