"""rl: JAX-vectorized text games and (later) SPIRAL self-play.

- `rl.envs`: TicTacToe, Kuhn Poker, Simple Negotiation as pure `init`/`step` over
  `flax.struct` states (`rl.envs.make`), an auto-reset batch wrapper, a jitted rollout and a
  conformance harness.
- `rl.text`: observation prompts and reply parsing (`render`, `parse`, their batched forms,
  `INVALID`), with SPIRAL's format check and the invalid-move conventions.
- `rl.grammar` / `rl.wording`: the games' action grammars and prompt wording behind `rl.text`.
- `rl.opponents`: random, minimax, Kuhn Nash and heuristic-negotiator policies.
- `rl.transcripts`: game conversations for the built-in model's training corpus.
- `rl.rae`: role-conditioned advantages; `rl.reasoning`: the offline reasoning harness.
- `rl.selfplay` (imported on its own: it loads the model core): SPIRAL self-play.
"""

from rl import envs, opponents, rae, reasoning, text, transcripts

__all__ = ["envs", "opponents", "rae", "reasoning", "text", "transcripts"]
