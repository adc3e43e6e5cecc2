"""Kuhn Poker table players: the Nash equilibrium family and the best response to random play.

A table player (`probs`, `__call__`) plays a strategy table (see `rl.envs.kuhn_poker.exact`)
every round. `KuhnNash(alpha)` is the Nash equilibrium family of one-round Kuhn Poker (bluff
parameter alpha in [0, 1/3]). Opener: J bets alpha, Q checks, K bets 3 alpha; after check-bet,
J folds, Q calls alpha + 1/3, K calls. Responder: after a check J bets 1/3, Q checks, K bets;
facing a bet J folds, Q calls 1/3, K calls. `KuhnBestResponse()` maximises each round's
expected chips against the random player: against random play it wins ~0.7 of 5-round games
where the Nash player wins ~0.5, the ceiling for exploiting random.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from rl.envs.core import EnvError
from rl.envs.kuhn_poker.exact import kuhn_best_response, kuhn_random_table
from rl.envs.kuhn_poker.rules import C, State


class _KuhnTablePolicy:
    """A Kuhn Poker player given by P(aggressive) per betting node and card, played every round.

    Subclasses define `aggressive() -> float [4 nodes, 3 cards]`: P(bet) at START / C, P(call)
    at B / CB, per card J Q K.
    """

    def aggressive(self) -> np.ndarray:
        raise NotImplementedError

    def probs(self, state: State) -> Float[Array, " 4"]:
        """Distribution over [check, bet, call, fold] at the current decision."""
        r = jnp.clip(state.round, 0, state.nodes.shape[0] - 1)
        node = jnp.clip(state.nodes[r].astype(jnp.int32), 0, 3)
        card = state.cards[r, state.current_player].astype(jnp.int32)
        p = jnp.asarray(self.aggressive())[node, card]
        opening = node <= C  # START or C: check / bet; B or CB: call / fold
        return jnp.where(
            opening, jnp.stack([1 - p, p, 0.0, 0.0]), jnp.stack([0.0, 0.0, p, 1 - p])
        ).astype(jnp.float32)

    def __call__(self, key: jax.Array, state: State) -> Int[Array, ""]:
        cdf = jnp.cumsum(self.probs(state))
        return jnp.argmax(jax.random.uniform(key) < cdf).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class KuhnNash(_KuhnTablePolicy):
    """A Nash equilibrium of one-round Kuhn Poker, played every round.

    Attributes:
      alpha: the opener's bluff probability with J, in [0, 1/3] (default 1/6).
    """

    alpha: float = 1 / 6

    def __post_init__(self):
        if not 0.0 <= float(self.alpha) <= 1 / 3 + 1e-12:
            raise EnvError(f"KuhnNash alpha={self.alpha!r}: expected a float in [0, 1/3]")

    def aggressive(self) -> np.ndarray:
        a = float(self.alpha)
        return np.array(
            [[a, 0.0, 3 * a], [1 / 3, 0.0, 1.0], [0.0, 1 / 3, 1.0], [0.0, a + 1 / 3, 1.0]],
            np.float32,
        )


@dataclasses.dataclass(frozen=True)
class KuhnBestResponse(_KuhnTablePolicy):
    """The best response to a uniformly random Kuhn Poker player: the pure strategy that
    maximises each round's expected chips against it (`kuhn_best_response`).

    Against the random opponent it wins ~0.7 of 5-round games where the Nash player (which
    guards against exploitation rather than exploiting) wins ~0.5: it marks the room a policy
    that learns to exploit random play has.

    Attributes:
      bets_add_chips: False for the `spiral_v1` / `textarena` variants (the pot stays 2).
    """

    bets_add_chips: bool = True

    def aggressive(self) -> np.ndarray:
        return kuhn_best_response(kuhn_random_table(), self.bets_add_chips)
