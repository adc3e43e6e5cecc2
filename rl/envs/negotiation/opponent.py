"""The heuristic negotiator, Simple Negotiation's strongest fixed opponent.

Values sum to 20 per unit of either resource across the two players, so a trade moves the gain
difference by 20 x (units received - units given): it accepts an offer it can pay for iff it
receives more units than it gives, and otherwise proposes to give k (1-3) of its cheaper
resource for k + 1 of its dearer one (counter-offering a bad offer), scaled down to what the
two players hold.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int

from rl.envs.negotiation.rules import ACCEPT, DENY, VALUES, Q, State


@dataclasses.dataclass(frozen=True)
class HeuristicNegotiator:
    """A simple trader for Simple Negotiation (see the module docstring)."""

    def __call__(self, key: jax.Array, state: State) -> Int[Array, ""]:
        me = state.current_player
        mine, theirs = state.inventory[me], state.inventory[1 - me]
        addressed = (state.offer_from >= 0) & (state.offer_from != me)
        receive, pay = state.offer_give, state.offer_want
        good = addressed & (jnp.sum(receive) > jnp.sum(pay)) & jnp.all(mine >= pay)
        cheap = jnp.argmin(jnp.asarray(VALUES)[me])  # the resource I value less
        k = jax.random.randint(key, (), 1, 4)
        k = jnp.minimum(k, jnp.minimum(mine[cheap], theirs[1 - cheap] - 1))
        give = jnp.zeros(2, jnp.int32).at[cheap].set(k)
        want = jnp.zeros(2, jnp.int32).at[1 - cheap].set(k + 1)
        offer = ((give[0] * Q + give[1]) * Q + want[0]) * Q
        offer = offer + want[1]
        can_offer = k >= 1
        counter = jnp.where(addressed, DENY, 0)
        action = jnp.where(can_offer, counter + offer, counter)
        return jnp.where(good, ACCEPT, action).astype(jnp.int32)
