"""Fixed opponents for evaluation (docs/games.md), as single-state JAX policies.

Each opponent is a frozen dataclass (hashable, so a static argument of jit) called as
`policy(key, state) -> action`; `jax.vmap` or `rl.envs.rollout` batches it.

- `RandomLegal(env)`: uniform over the legal moves (Negotiation: see
  `Negotiation.random_action`).
- `Minimax()`: perfect TicTacToe. A table over all 3**9 boards of the optimal moves (faster
  wins and slower losses preferred; ties broken at random) is built once on the host by
  negamax and looked up in JAX.
- `KuhnNash(alpha)`: the Nash equilibrium family of one-round Kuhn Poker, played every round
  (bluff parameter alpha in [0, 1/3]). Opener: J bets alpha, Q checks, K bets 3 alpha; after
  check-bet, J folds, Q calls alpha + 1/3, K calls. Responder: after a check J bets 1/3, Q
  checks, K bets; facing a bet J folds, Q calls 1/3, K calls. `probs(state)` gives the
  distribution over [check, bet, call, fold].
- `HeuristicNegotiator()`: values sum to 20 per unit of either resource across the two players,
  so a trade moves the gain difference by 20 x (units received - units given): it accepts an
  offer it can pay for iff it receives more units than it gives, and otherwise proposes to
  give k (1-3) of its cheaper resource for k + 1 of its dearer one (counter-offering a bad
  offer), scaled down to what the two players hold.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from rl.envs import core, kuhn_poker, negotiation, tictactoe
from rl.envs.core import sample_mask


@dataclasses.dataclass(frozen=True)
class RandomLegal:
    """Uniformly random legal moves in `env`."""

    env: core.Env

    def __call__(self, key: jax.Array, state) -> Int[Array, ""]:
        return self.env.random_action(key, state)


@functools.lru_cache(maxsize=1)
def minimax_table() -> np.ndarray:
    """bool [3**9, 9]: the optimal moves of the player to move on every board.

    A board's index is sum((cell + 1) * 3**c) over cells c, with cell -1 empty, 0 O, 1 X.
    """
    lines = tictactoe.LINES
    best = np.zeros((3**9, 9), bool)
    powers = 3 ** np.arange(9)

    @functools.cache
    def value(board: tuple[int, ...], player: int) -> int:
        """Score for `player` to move: (1 + empty cells) for a win, negated for a loss."""
        empty = [c for c in range(9) if board[c] == -1]
        if not empty:
            return 0
        scores = []
        for c in empty:
            nxt = board[:c] + (player,) + board[c + 1 :]
            if any(all(nxt[i] == player for i in line) for line in lines):
                scores.append(len(empty))  # win now; len(empty) = 1 + cells left after it
            else:
                scores.append(-value(nxt, 1 - player))
        top = max(scores)
        idx = int(np.dot(np.array(board) + 1, powers))
        best[idx, [c for c, s in zip(empty, scores, strict=True) if s == top]] = True
        return top

    value((-1,) * 9, 0)
    return best


@dataclasses.dataclass(frozen=True)
class Minimax:
    """Perfect TicTacToe play (random among the optimal moves)."""

    def __call__(self, key: jax.Array, state: tictactoe.State) -> Int[Array, ""]:
        powers = jnp.asarray(3 ** np.arange(9), jnp.int32)
        idx = jnp.sum((state.board.astype(jnp.int32) + 1) * powers)
        moves = jnp.asarray(minimax_table())[idx] & state.legal_action_mask
        return sample_mask(key, jnp.where(jnp.any(moves), moves, state.legal_action_mask))


@dataclasses.dataclass(frozen=True)
class KuhnNash:
    """A Nash equilibrium of one-round Kuhn Poker, played every round.

    Attributes:
      alpha: the opener's bluff probability with J, in [0, 1/3] (default 1/6).
    """

    alpha: float = 1 / 6

    def __post_init__(self):
        if not 0.0 <= float(self.alpha) <= 1 / 3 + 1e-12:
            raise core.EnvError(f"KuhnNash alpha={self.alpha!r}: expected a float in [0, 1/3]")

    def aggressive(self) -> np.ndarray:
        """float [4 nodes, 3 cards]: P(bet) at START / C, P(call) at B / CB, per card J Q K."""
        a = float(self.alpha)
        return np.array(
            [[a, 0.0, 3 * a], [1 / 3, 0.0, 1.0], [0.0, 1 / 3, 1.0], [0.0, a + 1 / 3, 1.0]],
            np.float32,
        )

    def probs(self, state: kuhn_poker.State) -> Float[Array, " 4"]:
        """Distribution over [check, bet, call, fold] at the current decision."""
        r = jnp.clip(state.round, 0, state.nodes.shape[0] - 1)
        node = jnp.clip(state.nodes[r].astype(jnp.int32), 0, 3)
        card = state.cards[r, state.current_player].astype(jnp.int32)
        p = jnp.asarray(self.aggressive())[node, card]
        opening = node <= kuhn_poker.C  # START or C: check / bet; B or CB: call / fold
        return jnp.where(
            opening, jnp.stack([1 - p, p, 0.0, 0.0]), jnp.stack([0.0, 0.0, p, 1 - p])
        ).astype(jnp.float32)

    def __call__(self, key: jax.Array, state: kuhn_poker.State) -> Int[Array, ""]:
        cdf = jnp.cumsum(self.probs(state))
        return jnp.argmax(jax.random.uniform(key) < cdf).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class HeuristicNegotiator:
    """A simple trader for Simple Negotiation (see the module docstring)."""

    def __call__(self, key: jax.Array, state: negotiation.State) -> Int[Array, ""]:
        me = state.current_player
        mine, theirs = state.inventory[me], state.inventory[1 - me]
        addressed = (state.offer_from >= 0) & (state.offer_from != me)
        receive, pay = state.offer_give, state.offer_want
        good = addressed & (jnp.sum(receive) > jnp.sum(pay)) & jnp.all(mine >= pay)
        cheap = jnp.argmin(jnp.asarray(negotiation.VALUES)[me])  # the resource I value less
        k = jax.random.randint(key, (), 1, 4)
        k = jnp.minimum(k, jnp.minimum(mine[cheap], theirs[1 - cheap] - 1))
        give = jnp.zeros(2, jnp.int32).at[cheap].set(k)
        want = jnp.zeros(2, jnp.int32).at[1 - cheap].set(k + 1)
        offer = ((give[0] * negotiation.Q + give[1]) * negotiation.Q + want[0]) * negotiation.Q
        offer = offer + want[1]
        can_offer = k >= 1
        counter = jnp.where(addressed, negotiation.DENY, 0)
        action = jnp.where(can_offer, counter + offer, counter)
        return jnp.where(good, negotiation.ACCEPT, action).astype(jnp.int32)
