"""rl: JAX-vectorized text games and SPIRAL self-play on the jaxlens model core.

- `rl.envs`: the games, one package each (rules as pure `init`/`step` over `flax.struct`
  states, prompt wording, reply grammar, optimal opponent, corpus player), registered once in
  one registry (`rl.envs.register`, `rl.envs.GAMES`, `rl.envs.make`); TicTacToe, Kuhn Poker
  and Simple Negotiation are built in. Also an auto-reset batch wrapper, a jitted rollout and
  a conformance harness.
- `rl.text`: observation prompts and reply parsing for any registered game (`render`, `parse`,
  their batched forms, `INVALID`), with SPIRAL's format check and the invalid-move conventions.
- `rl.opponents`: random and optimal opponents of any game (`fixed_policy`), and each built-in
  game's own (minimax, Kuhn Nash and best response, the heuristic negotiator).
- `rl.transcripts`: game conversations for the built-in model's training corpus.
- `rl.rae`: role-conditioned advantages; `rl.reasoning`: the bundled arithmetic set and its
  answer normalisation; `rl.benchmarks`: reasoning benchmarks from local files (MATH-500, AIME,
  GPQA, MMLU-Pro, ...) graded by math-verify, pass@1 with its standard error.
- `rl.selfplay` (imported on its own: it loads the model core's generation and learning):
  SPIRAL self-play, its evaluation and the study entry points (`run_study`, `evaluate_study`).
"""

from rl import benchmarks, envs, opponents, rae, reasoning, text, transcripts

__all__ = ["benchmarks", "envs", "opponents", "rae", "reasoning", "text", "transcripts"]
