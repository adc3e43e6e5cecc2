"""Kuhn Poker over several rounds, SPIRAL's way (docs/games.md), with three scoring variants.

Deck J < Q < K (ranks 0, 1, 2), reshuffled every round; `init` deals all rounds at once from
its key (`cards [R, 2]`, player 0's card first). Both players ante 1 chip per round (chips
start at 0, pot 2). Round r (0-based) is opened by player `1 - r % 2`: player 1 opens rounds
1, 3, 5, so the same player may act twice in a row across a round boundary.

Betting per round, as a node of this tree (`nodes [R]` holds each round's node, so the state
carries the whole history):

    START --check--> C --check--> CC (showdown)
          |             --bet----> CB --call--> CBC (showdown)
          |                           --fold--> CBF (opener folds: responder wins)
          --bet----> B --call--> BC (showdown)
                       --fold--> BF (responder folds: opener wins)

Showdown: the higher card wins the pot. Actions: CHECK, BET, CALL, FOLD (0-3); any other,
or one not legal at the node, is an invalid move (-1 for the mover, 0 for the other player).

Variants (`KuhnPoker(variant=...)`):

- `"standard"` (default): bets and calls add 1 chip to the pot; after the last round the
  player with more chips wins (+1 / -1), equal chips is a draw.
- `"spiral_v1"`: SPIRAL's quirks, reproduced on purpose. (1) Bets and calls never add chips
  (the pot stays 2, so every round moves exactly 1 chip each way); (2) the game's +/-1 is
  decided by the winner of the last round alone, whatever the chip totals. Never a draw.
- `"textarena"`: TextArena 0.7.4's `KuhnPokerEnv`: chips as in `spiral_v1` (pot always 2),
  winner by chip totals as in `"standard"`. Kept so the equivalence test can be exact.
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

CHECK, BET, CALL, FOLD = 0, 1, 2, 3
ACTION_NAMES = ("[check]", "[bet]", "[call]", "[fold]")
CARD_NAMES = ("J", "Q", "K")
VARIANTS = ("standard", "spiral_v1", "textarena")

# Betting nodes. Non-terminal: START, C, B, CB; terminal: CC, BC, BF, CBC, CBF.
START, C, B, CB, CC, BC, BF, CBC, CBF = range(9)
NODE_NAMES = ("", "check", "bet", "check bet", "check check", "bet call", "bet fold",
              "check bet call", "check bet fold")  # fmt: skip
_ = -1
NEXT = np.array(
    [  # CHECK BET CALL FOLD
        [C, B, _, _],  # START
        [CC, CB, _, _],  # C
        [_, _, BC, BF],  # B
        [_, _, CBC, CBF],  # CB
    ]
    + [[_, _, _, _]] * 5,  # terminal nodes
    dtype=np.int32,
)  # [9 nodes, 4 actions]
LEGAL = NEXT >= 0  # [9, 4]
TERMINAL = np.array([False] * 4 + [True] * 5)  # [9]
SHOWDOWN = np.isin(np.arange(9), [CC, BC, CBC])  # [9]
# Chips the loser puts in beyond the ante, when bets add chips (standard).
EXTRA = np.array([0, 0, 0, 0, 0, 1, 0, 1, 0], dtype=np.int32)  # [9]
# The 6 deals of two distinct cards from {J, Q, K}.
DEALS = np.array([[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]], dtype=np.int8)  # [6, 2]

# `check` codes (index into KuhnPoker.REASONS)
UNKNOWN_ACTION, NOT_NOW, GAME_OVER = 1, 2, 3


@struct.dataclass
class State:
    current_player: Int[Array, ""]
    legal_action_mask: Bool[Array, " 4"]
    rewards: Float[Array, " 2"]
    terminated: Bool[Array, ""]
    move_count: Int[Array, ""]
    round: Int[Array, ""]  # 0-based index of the round being played (R once over)
    cards: Int[Array, "R 2"]  # int8 rank per round and player
    nodes: Int[Array, " R"]  # int8 betting node per round (START for rounds not yet played)
    chips: Int[Array, " 2"]  # net chips won so far over finished rounds (antes included)


def opener(round_index: Int[Array, ""]) -> Int[Array, ""]:
    """The player who acts first in a round: player 1 in rounds 0, 2, 4, ..."""
    return (1 - round_index % 2).astype(jnp.int32)


def round_result(
    node: Int[Array, ""], cards: Int[Array, " 2"], first: Int[Array, ""], bets_add_chips: bool
) -> tuple[Int[Array, ""], Int[Array, ""]]:
    """(winner, chips won from the loser) of a round that ended at terminal `node`."""
    node = jnp.asarray(node, jnp.int32)
    by_cards = jnp.where(cards[0] > cards[1], 0, 1)
    folder = jnp.where(node == BF, 1 - first, first)  # BF: responder folds; CBF: opener
    winner = jnp.where(jnp.asarray(SHOWDOWN)[node], by_cards, 1 - folder)
    amount = 1 + (jnp.asarray(EXTRA)[node] if bets_add_chips else 0)
    return winner.astype(jnp.int32), jnp.asarray(amount, jnp.int32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class KuhnPoker(core.Env):
    """Multi-round Kuhn Poker.

    Attributes:
      variant: "standard" (default), "spiral_v1" or "textarena"; see the module docstring.
      rounds: number of rounds (SPIRAL: 5).
    """

    variant: str = "standard"
    rounds: int = 5

    name: ClassVar[str] = "kuhn_poker"
    num_actions: ClassVar[int] = 4
    action_names: ClassVar[tuple[str, ...]] = ACTION_NAMES
    REASONS: ClassVar[tuple[str, ...]] = (
        "ok",
        "not one of [check], [bet], [call], [fold]",
        "not a legal action at this point of the round",
        "the game is over",
    )

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise core.EnvError(
                f"KuhnPoker variant={self.variant!r} is unknown; expected one of {VARIANTS}"
            )
        if not isinstance(self.rounds, int) or isinstance(self.rounds, bool) or self.rounds < 1:
            raise core.EnvError(f"KuhnPoker rounds={self.rounds!r}: expected an int >= 1")

    @property
    def max_moves(self) -> int:  # type: ignore[override]
        return 3 * self.rounds

    def init(self, key: jax.Array) -> State:
        return self._deal(self._deal_codes(key, ()))

    def init_batch(self, key: jax.Array, batch: int) -> State:
        return jax.vmap(self._deal)(self._deal_codes(key, (batch,)))

    def _deal_codes(self, key: jax.Array, shape: tuple[int, ...]) -> Int[Array, "... R"]:
        """Uniform indices into DEALS per round: one draw per game while 6**rounds fits."""
        n = len(DEALS)
        if self.rounds > 11:
            return jax.random.randint(key, (*shape, self.rounds), 0, n)
        code = jax.random.randint(key, shape, 0, n**self.rounds)
        return (code[..., None] // n ** jnp.arange(self.rounds)) % n

    def _deal(self, deal: Int[Array, " R"]) -> State:
        return State(
            current_player=opener(jnp.int32(0)),
            legal_action_mask=jnp.asarray(LEGAL[START]),
            rewards=jnp.zeros(2, jnp.float32),
            terminated=jnp.bool_(False),
            move_count=jnp.int32(0),
            round=jnp.int32(0),
            cards=jnp.asarray(DEALS)[deal],
            nodes=jnp.full(self.rounds, START, jnp.int8),
            chips=jnp.zeros(2, jnp.int32),
        )

    def check(self, state: State, action: Int[Array, ""] | int) -> Int[Array, ""]:
        action = jnp.asarray(action, jnp.int32)
        known = (action >= 0) & (action < self.num_actions)
        allowed = state.legal_action_mask[jnp.clip(action, 0, self.num_actions - 1)]
        return jnp.select(
            [state.terminated, ~known, ~allowed], [GAME_OVER, UNKNOWN_ACTION, NOT_NOW], core.OK
        ).astype(jnp.int32)

    def step(self, state: State, action: Int[Array, ""] | int) -> State:
        action = jnp.asarray(action, jnp.int32)
        player = state.current_player
        live = ~state.terminated
        legal = self.check(state, action) == core.OK
        r = jnp.clip(state.round, 0, self.rounds - 1)
        node = jnp.where(
            legal, jnp.asarray(NEXT)[state.nodes[r], jnp.clip(action, 0, 3)], state.nodes[r]
        )
        round_over = legal & jnp.asarray(TERMINAL)[node]
        winner, amount = round_result(
            node, state.cards[r], opener(r), bets_add_chips=self.variant == "standard"
        )
        delta = jnp.where(jnp.arange(2) == winner, amount, -amount)
        chips = state.chips + jnp.where(round_over, delta, 0)
        next_round = state.round + round_over.astype(jnp.int32)
        game_over = round_over & (next_round == self.rounds)
        if self.variant == "spiral_v1":
            final = core.end_rewards(winner, jnp.bool_(True))
        else:
            final = core.end_rewards(jnp.where(chips[0] > chips[1], 0, 1), chips[0] != chips[1])
        rewards = jnp.where(legal, jnp.where(game_over, final, 0.0), core.penalty_rewards(player))
        terminated = state.terminated | (live & (~legal | game_over))
        next_player = jnp.where(round_over, opener(next_round), 1 - player)
        mask_node = jnp.where(round_over, START, node)
        return State(
            current_player=jnp.where(legal & ~game_over, next_player, player),
            legal_action_mask=jnp.asarray(LEGAL)[mask_node] & ~terminated,
            rewards=jnp.where(live, rewards, 0.0).astype(jnp.float32),
            terminated=terminated,
            move_count=state.move_count + legal.astype(jnp.int32),
            round=next_round,
            cards=state.cards,
            nodes=state.nodes.at[r].set(node.astype(jnp.int8)),
            chips=chips,
        )
