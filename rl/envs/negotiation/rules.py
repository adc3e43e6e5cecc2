"""Simple Negotiation, SPIRAL's variant (docs/games.md): two resources, fixed start, 10 moves.

Resources Wood and Gold (index 0, 1). Each player starts with 10 of each; player 0 values
Wood 5 / Gold 15, player 1 Wood 15 / Gold 5, so both start at value 200. Moves strictly
alternate, player 0 first, for exactly `moves` (10) moves unless an invalid move ends the game
earlier. At the end each player's gain is inventory value minus the starting value; the larger
gain wins (+1 / -1), equal gains draw.

A move is free text in the game; here it is a structured action (the text layer maps text to
it), so the rules stay in JAX. An action is a response to the pending offer plus an optional
new offer:

    response in {R_NONE, R_ACCEPT, R_DENY}
    offer    (give_wood, give_gold) -> (want_wood, want_gold), each 0..21; all zero = no offer

encoded in one int32 id: `response * 22**4 + ((gw * 22 + gg) * 22 + ww) * 22 + wg` (`encode`,
`decode`); the actions without an offer are named `TALK`, `ACCEPT`, `DENY`. Quantity 21 stands
for "more than 20": no one can ever hold 21 of a resource (there are 20 in the game), so every
larger number in a reply behaves exactly like 21 (giving it is always invalid, a request for it
can never be met). The state keeps the pending offer
(`offer_from`, -1 when none; `offer_give`, `offer_want`) and per move the action and what
happened (`history`, `events`) for the text layer.

Order within a move: the pending offer is handled first, then the new offer is read.

- ACCEPT with an offer pending: by the proposer it is an invalid move; by the addressee, if the
  addressee lacks what is asked it is the addressee's invalid move, else if the proposer lacks
  what was offered the trade is cancelled without penalty, else the two swap. The offer is
  cleared in every case. ACCEPT with nothing pending changes nothing (as in TextArena).
- DENY clears a pending offer. Plain talk (response R_NONE) leaves it pending.
- A new offer replaces the pending one (a counter-offer is an implicit deny). It is invalid if
  one side is empty (TextArena's "malformed offer") or the mover does not hold what they give
  (after this move's trade). What is asked of the other player is not checked until they
  accept (SPIRAL lets model-written offers through to the env unfiltered).

`legal_action_mask` covers the response part only (R_NONE, R_ACCEPT, R_DENY): the offer part is too
large for a dense mask (3 x 22**4 ids). `check`/`is_legal` decide any full action id, and
`random_action` samples a legal one (see its docstring).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Float, Int

from rl.envs import core

RESOURCES = ("Wood", "Gold")
VALUES = np.array([[5, 15], [15, 5]], dtype=np.int32)  # [player, resource]
START = np.array([[10, 10], [10, 10]], dtype=np.int32)  # [player, resource]
Q = 22  # quantity radix: 0..20 real, 21 = "more than 20"
MORE = Q - 1
R_NONE, R_ACCEPT, R_DENY = 0, 1, 2  # the response part of an action (mask index)
RESPONSE_NAMES = ("", "[Accept]", "[Deny]")
OFFERS = Q**4
TALK, ACCEPT, DENY = 0, R_ACCEPT * OFFERS, R_DENY * OFFERS  # actions without a new offer

# `check` codes (index into Negotiation.REASONS)
BAD_ID, OWN_OFFER, ACCEPTOR_LACKS, MALFORMED, GIVER_LACKS, GAME_OVER = 1, 2, 3, 4, 5, 6
# `events` bits, one int8 per move
E_OFFER, E_TRADE, E_CANCELLED, E_DENIED, E_INVALID = 1, 2, 4, 8, 16


def encode(response: int = R_NONE, give=(0, 0), want=(0, 0)) -> int:
    """The action id of `response` plus the offer `give -> want` (host-side, plain ints).

    Quantities above 20 are stored as 21 ("more than 20"); negative ones are rejected.
    """
    if response not in (R_NONE, R_ACCEPT, R_DENY):
        raise core.EnvError(
            f"response={response!r}: expected R_NONE (0), R_ACCEPT (1) or R_DENY (2)"
        )
    qty = [int(x) for x in (*give, *want)]
    if len(qty) != 4 or min(qty) < 0:
        raise core.EnvError(f"give={give!r}, want={want!r}: expected two pairs of ints >= 0")
    gw, gg, ww, wg = (min(x, MORE) for x in qty)
    return int(response) * OFFERS + ((gw * Q + gg) * Q + ww) * Q + wg


def decode(action: Int[Array, ""]) -> tuple[Int[Array, ""], Int[Array, " 2"], Int[Array, " 2"]]:
    """(response, give [2], want [2]) of an action id (works on arrays and under jit)."""
    a = jnp.clip(jnp.asarray(action, jnp.int32), 0, 3 * OFFERS - 1)
    response, offer = a // OFFERS, a % OFFERS
    digits = (offer // jnp.array([Q**3, Q**2, Q, 1])) % Q  # [4]
    return response, digits[:2], digits[2:]


def decode_int(action: int) -> tuple[int, list[int], list[int]]:
    """`decode` on the host for a plain int (no JAX dispatch)."""
    a = min(max(int(action), 0), 3 * OFFERS - 1)
    response, offer = divmod(a, OFFERS)
    digits = [(offer // Q**k) % Q for k in (3, 2, 1, 0)]
    return response, digits[:2], digits[2:]


@struct.dataclass
class State:
    current_player: Int[Array, ""]
    legal_action_mask: Bool[Array, " 3"]  # over the response: NONE, ACCEPT, DENY
    rewards: Float[Array, " 2"]
    terminated: Bool[Array, ""]
    move_count: Int[Array, ""]
    inventory: Int[Array, "2 2"]  # [player, resource]
    offer_from: Int[Array, ""]  # proposer of the pending offer, -1 when none
    offer_give: Int[Array, " 2"]  # what the proposer gives
    offer_want: Int[Array, " 2"]  # what the proposer asks for
    history: Int[Array, " M"]  # action id of each move made so far, -1 for moves not made
    events: Int[Array, " M"]  # int8 bit set per move: E_OFFER | E_TRADE | E_CANCELLED | ...


class _Resolved(struct.PyTreeNode):
    """What an action does to a state: the shared core of `check` and `step`."""

    code: Int[Array, ""]
    inventory: Int[Array, "2 2"]
    offer_from: Int[Array, ""]
    offer_give: Int[Array, " 2"]
    offer_want: Int[Array, " 2"]
    events: Int[Array, ""]


def _resolve(state: State, action: Int[Array, ""]) -> _Resolved:
    action = jnp.asarray(action, jnp.int32)
    player = state.current_player
    response, give, want = decode(action)
    pending = state.offer_from >= 0
    proposer = jnp.clip(state.offer_from, 0, 1)
    accept = pending & (response == R_ACCEPT)
    own = accept & (player == proposer)
    acceptor_lacks = accept & ~own & jnp.any(state.inventory[player] < state.offer_want)
    tries = accept & ~own & ~acceptor_lacks
    proposer_lacks = tries & jnp.any(state.inventory[proposer] < state.offer_give)
    trade = tries & ~proposer_lacks
    flow = state.offer_want - state.offer_give  # what the proposer gains, [2]
    sign = jnp.where(jnp.arange(2) == proposer, 1, -1)[:, None]  # [2 players, 1]
    inventory = state.inventory + jnp.where(trade, sign * flow[None, :], 0)
    cleared = accept | (pending & (response == R_DENY))
    has_offer = jnp.any(give > 0) | jnp.any(want > 0)
    malformed = has_offer & (jnp.all(give == 0) | jnp.all(want == 0))
    giver_lacks = has_offer & ~malformed & jnp.any(inventory[player] < give)
    bad_id = (action < 0) | (action >= 3 * OFFERS)
    code = jnp.select(
        [state.terminated, bad_id, own, acceptor_lacks, malformed, giver_lacks],
        [GAME_OVER, BAD_ID, OWN_OFFER, ACCEPTOR_LACKS, MALFORMED, GIVER_LACKS],
        core.OK,
    ).astype(jnp.int32)
    offer_from = jnp.where(has_offer, player, jnp.where(cleared, -1, state.offer_from))
    events = (
        E_OFFER * has_offer
        + E_TRADE * trade
        + E_CANCELLED * proposer_lacks
        + E_DENIED * (pending & ~accept & ((response == R_DENY) | has_offer))
    )
    return _Resolved(
        code=code,
        inventory=inventory,
        offer_from=offer_from.astype(jnp.int32),
        offer_give=jnp.where(has_offer, give, state.offer_give),
        offer_want=jnp.where(has_offer, want, state.offer_want),
        events=events.astype(jnp.int32),
    )


def response_mask(state: State) -> Bool[Array, " 3"]:
    """Which responses are legal now: ACCEPT is not when it would be an invalid move."""
    pending = state.offer_from >= 0
    player = state.current_player
    lacks = jnp.any(state.inventory[player] < state.offer_want)
    bad_accept = pending & ((state.offer_from == player) | lacks)
    return jnp.stack([jnp.bool_(True), ~bad_accept, jnp.bool_(True)]) & ~state.terminated


def gains(inventory: Int[Array, "2 2"]) -> Int[Array, " 2"]:
    """Each player's inventory value minus the starting value, by their own values."""
    return jnp.sum(inventory * VALUES, axis=1) - jnp.sum(START * VALUES, axis=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Negotiation(core.Env):
    """Simple Negotiation.

    Attributes:
      moves: number of moves in a game (SPIRAL: 10).
    """

    moves: int = 10

    name: ClassVar[str] = "negotiation"
    num_actions: ClassVar[int] = 3 * OFFERS
    action_names: ClassVar[tuple[str, ...]] = RESPONSE_NAMES
    REASONS: ClassVar[tuple[str, ...]] = (
        "ok",
        "not a negotiation action id",
        "only the other player may accept your own offer",
        "you do not hold the resources the offer asks of you",
        "an offer needs at least one item on each side",
        "you do not hold the resources you offer",
        "the game is over",
    )

    def __post_init__(self):
        if not isinstance(self.moves, int) or isinstance(self.moves, bool) or self.moves < 1:
            raise core.EnvError(f"Negotiation moves={self.moves!r}: expected an int >= 1")

    @property
    def max_moves(self) -> int:  # type: ignore[override]
        return self.moves

    def init(self, key: jax.Array) -> State:
        del key  # fixed start
        return State(
            current_player=jnp.int32(0),
            legal_action_mask=jnp.array([True, True, True]),
            rewards=jnp.zeros(2, jnp.float32),
            terminated=jnp.bool_(False),
            move_count=jnp.int32(0),
            inventory=jnp.asarray(START),
            offer_from=jnp.int32(-1),
            offer_give=jnp.zeros(2, jnp.int32),
            offer_want=jnp.zeros(2, jnp.int32),
            history=jnp.full(self.moves, -1, jnp.int32),
            events=jnp.zeros(self.moves, jnp.int8),
        )

    def check(self, state: State, action: Int[Array, ""] | int) -> Int[Array, ""]:
        return _resolve(state, action).code

    def step(self, state: State, action: Int[Array, ""] | int) -> State:
        player = state.current_player
        live = ~state.terminated
        res = _resolve(state, action)
        legal = res.code == core.OK
        count = state.move_count + live.astype(jnp.int32)
        ended = live & (~legal | (count >= self.moves))
        g = gains(res.inventory)
        final = core.end_rewards(jnp.where(g[0] > g[1], 0, 1), g[0] != g[1])
        rewards = jnp.where(legal, jnp.where(ended, final, 0.0), core.penalty_rewards(player))
        terminated = state.terminated | ended
        slot = jnp.clip(state.move_count, 0, self.moves - 1)
        keep = lambda new, old: jnp.where(live & legal, new, old)
        new = State(
            current_player=jnp.where(live & legal & ~ended, 1 - player, player),
            legal_action_mask=state.legal_action_mask,
            rewards=jnp.where(live, rewards, 0.0).astype(jnp.float32),
            terminated=terminated,
            move_count=count,
            inventory=keep(res.inventory, state.inventory),
            offer_from=keep(res.offer_from, state.offer_from),
            offer_give=keep(res.offer_give, state.offer_give),
            offer_want=keep(res.offer_want, state.offer_want),
            history=jnp.where(live, state.history.at[slot].set(action), state.history),
            events=jnp.where(
                live,
                state.events.at[slot].set(jnp.where(legal, res.events, E_INVALID).astype(jnp.int8)),
                state.events,
            ),
        )
        return new.replace(legal_action_mask=response_mask(new))

    def random_action(self, key: jax.Array, state: State) -> Int[Array, ""]:
        """A random legal move: respond to an offer addressed to me, or make a new offer.

        With an offer pending for the mover: ACCEPT (when affordable), DENY or a counter-offer,
        each equally likely. Otherwise a new offer. An offer gives a uniform amount of each
        resource up to the mover's holdings and asks a uniform amount of each up to the other
        player's holdings, redrawn on a side that came out empty (so it is well-formed).
        """
        player = state.current_player
        k_kind, k_give, k_want, k_fix = jax.random.split(key, 4)
        mine, theirs = state.inventory[player], state.inventory[1 - player]
        give = _nonempty_draw(k_give, mine, k_fix)
        want = _nonempty_draw(k_want, theirs, jax.random.fold_in(k_fix, 1))
        offer = ((give[0] * Q + give[1]) * Q + want[0]) * Q + want[1]
        addressed = (state.offer_from >= 0) & (state.offer_from != player)
        affordable = ~jnp.any(mine < state.offer_want)
        kinds = jnp.stack([affordable, jnp.bool_(True), jnp.bool_(True)]) & addressed  # A, D, O
        kind = jnp.where(addressed, core.sample_mask(k_kind, kinds), 2)
        return jnp.select([kind == 0, kind == 1], [ACCEPT, DENY], offer).astype(jnp.int32)


def _nonempty_draw(key: jax.Array, limit: Int[Array, " 2"], key_fix: jax.Array) -> Int[Array, " 2"]:
    """Uniform quantities in [0, limit] per resource; if all zero, one random resource >= 1."""
    limit = jnp.minimum(limit, MORE - 1)
    q = jnp.floor(jax.random.uniform(key, (2,)) * (limit + 1)).astype(jnp.int32)
    which = jax.random.randint(key_fix, (), 0, 2)
    which = jnp.where(limit[which] > 0, which, 1 - which)
    fix = 1 + jnp.floor(jax.random.uniform(key_fix) * limit[which]).astype(jnp.int32)
    fixed = q.at[which].set(jnp.maximum(fix, 1))
    return jnp.where(jnp.all(q == 0), fixed, q)
