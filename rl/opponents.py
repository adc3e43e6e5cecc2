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
- `KuhnBestResponse()`: the pure strategy that maximises each round's expected chips against
  the random player (`kuhn_best_response`, by backward induction; `kuhn_round_value` gives a
  round's exact value for any two strategies). Against random play it wins ~0.7 of 5-round
  games where the Nash player wins ~0.5: it, not Nash, is the ceiling for exploiting random.
  `kuhn_match_outcome` gives a whole game's exact win / draw / loss probabilities for two
  tables, `kuhn_chips_per_round` a table's chips against another over both seats, and
  `kuhn_exploitability` how much a best response wins against a table; `kuhn_random_table()`
  is the random player's table.
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


class _KuhnTablePolicy:
    """A Kuhn Poker player given by P(aggressive) per betting node and card, played every round.

    Subclasses define `aggressive() -> float [4 nodes, 3 cards]`: P(bet) at START / C, P(call)
    at B / CB, per card J Q K.
    """

    def aggressive(self) -> np.ndarray:
        raise NotImplementedError

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
class KuhnNash(_KuhnTablePolicy):
    """A Nash equilibrium of one-round Kuhn Poker, played every round.

    Attributes:
      alpha: the opener's bluff probability with J, in [0, 1/3] (default 1/6).
    """

    alpha: float = 1 / 6

    def __post_init__(self):
        if not 0.0 <= float(self.alpha) <= 1 / 3 + 1e-12:
            raise core.EnvError(f"KuhnNash alpha={self.alpha!r}: expected a float in [0, 1/3]")

    def aggressive(self) -> np.ndarray:
        a = float(self.alpha)
        return np.array(
            [[a, 0.0, 3 * a], [1 / 3, 0.0, 1.0], [0.0, 1 / 3, 1.0], [0.0, a + 1 / 3, 1.0]],
            np.float32,
        )


def kuhn_random_table() -> np.ndarray:
    """The uniformly random player as a Kuhn table: each of the two legal moves half the time."""
    return np.full((4, 3), 0.5)


def _showdown(mine: int, theirs: int) -> int:
    return 1 if mine > theirs else -1


def _kuhn_table(table: np.ndarray, what: str) -> np.ndarray:
    """`table` as float64 [4 nodes, 3 cards] of probabilities, or a clear error."""
    t = np.asarray(table, np.float64)
    if t.shape != (4, 3) or not np.all((t >= 0) & (t <= 1)):
        raise core.EnvError(
            f"{what}: expected a Kuhn strategy table, float [4 nodes, 3 cards] of P(bet or call) "
            f"in [0, 1]; got shape {t.shape}"
            + ("" if t.shape != (4, 3) else f" with values {t.min():.3g} .. {t.max():.3g}")
        )
    return t


def kuhn_round_outcomes(
    opener: np.ndarray, responder: np.ndarray, bets_add_chips: bool = True
) -> dict[int, float]:
    """{chips the opener wins: probability} for one round of Kuhn Poker, exact over the 6
    deals, when the opener plays table `opener` and the responder `responder` (tables as
    `_KuhnTablePolicy.aggressive()`: float [4 nodes, 3 cards] of P(bet or call))."""
    opener = _kuhn_table(opener, "kuhn_round_outcomes opener")
    responder = _kuhn_table(responder, "kuhn_round_outcomes responder")
    big = 2 if bets_add_chips else 1  # chips at a called showdown
    out: dict[int, float] = {}

    def add(chips: int, p: float) -> None:
        out[chips] = out.get(chips, 0.0) + p / len(kuhn_poker.DEALS)

    for a, b in kuhn_poker.DEALS.astype(int):
        bet0, bet1 = float(opener[kuhn_poker.START, a]), float(responder[kuhn_poker.C, b])
        call1, call0 = float(responder[kuhn_poker.B, b]), float(opener[kuhn_poker.CB, a])
        sd = _showdown(a, b)
        add(big * sd, bet0 * call1)  # B, called
        add(1, bet0 * (1 - call1))  # B, responder folds
        add(sd, (1 - bet0) * (1 - bet1))  # CC
        add(big * sd, (1 - bet0) * bet1 * call0)  # CB, called
        add(-1, (1 - bet0) * bet1 * (1 - call0))  # CB, opener folds
    return out


def kuhn_round_value(
    opener: np.ndarray, responder: np.ndarray, bets_add_chips: bool = True
) -> float:
    """Expected chips the opener wins in one round (`kuhn_round_outcomes`' mean)."""
    return sum(c * p for c, p in kuhn_round_outcomes(opener, responder, bets_add_chips).items())


def kuhn_match_outcome(
    table: np.ndarray,
    opponent: np.ndarray,
    *,
    seat: int,
    rounds: int = 5,
    bets_add_chips: bool = True,
) -> tuple[float, float, float]:
    """Exact (win, draw, loss) probabilities of a whole game for the player of `table` in
    `seat` against `opponent`, both playing their table every round, the winner decided by
    chip totals as in the "standard" variant (the "textarena" one with `bets_add_chips=False`).
    Round r is opened by player 1 - r % 2, as in `rl.envs.KuhnPoker`."""
    if seat not in (0, 1):
        raise core.EnvError(f"kuhn_match_outcome seat={seat!r}: expected 0 or 1")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise core.EnvError(f"kuhn_match_outcome rounds={rounds!r}: expected an int >= 1")
    as_opener = kuhn_round_outcomes(table, opponent, bets_add_chips)
    as_responder = {-c: p for c, p in kuhn_round_outcomes(opponent, table, bets_add_chips).items()}
    chips = {0: 1.0}  # distribution of the player's net chips so far
    for r in range(rounds):
        step = as_opener if int(kuhn_poker.opener(jnp.int32(r))) == seat else as_responder
        after: dict[int, float] = {}
        for total, p in chips.items():
            for c, q in step.items():
                after[total + c] = after.get(total + c, 0.0) + p * q
        chips = after
    win = sum(p for c, p in chips.items() if c > 0)
    draw = chips.get(0, 0.0)
    return win, draw, 1.0 - win - draw


def kuhn_chips_per_round(
    table: np.ndarray, opponent: np.ndarray, bets_add_chips: bool = True
) -> float:
    """Expected chips a round the player of `table` wins against `opponent`, averaged over
    opening and responding."""
    return 0.5 * (
        kuhn_round_value(table, opponent, bets_add_chips)
        - kuhn_round_value(opponent, table, bets_add_chips)
    )


def kuhn_exploitability(table: np.ndarray, bets_add_chips: bool = True) -> float:
    """Chips per round a best response wins against `table`, averaged over the two seats:
    0 for a Nash equilibrium (the game's value is -1/18 for the opener, +1/18 for the
    responder), ~0.46 for the random player."""
    best = kuhn_best_response(table, bets_add_chips)
    return kuhn_chips_per_round(best, table, bets_add_chips)


def kuhn_best_response(opponent: np.ndarray, bets_add_chips: bool = True) -> np.ndarray:
    """float [4, 3] of 0/1: the pure table that maximises a round's expected chips against a
    player of table `opponent`, in either seat (backward induction over the information sets:
    own card and betting node, the opponent's card weighted by how likely its play reached
    there). Ties go to the passive move."""
    big = 2 if bets_add_chips else 1
    q = _kuhn_table(opponent, "kuhn_best_response opponent")
    best = np.zeros((4, 3), np.float32)
    for c in range(3):
        others = [o for o in range(3) if o != c]
        sd = {o: _showdown(c, o) for o in others}
        # Opener facing check-bet: the responder bet at C with its card.
        call = sum(q[kuhn_poker.C, o] * big * sd[o] for o in others)
        fold = -sum(q[kuhn_poker.C, o] for o in others)
        best[kuhn_poker.CB, c] = call > fold
        after_cb = {o: big * sd[o] if call > fold else -1 for o in others}
        # Opener's first move.
        bet = sum(q[kuhn_poker.B, o] * big * sd[o] + 1 - q[kuhn_poker.B, o] for o in others)
        check = sum(
            (1 - q[kuhn_poker.C, o]) * sd[o] + q[kuhn_poker.C, o] * after_cb[o] for o in others
        )
        best[kuhn_poker.START, c] = bet > check
        # Responder: the opener's card weighted by how likely it checked (C) or bet (B).
        checked = {o: 1 - q[kuhn_poker.START, o] for o in others}
        bet_back = sum(
            checked[o] * (q[kuhn_poker.CB, o] * big * sd[o] + 1 - q[kuhn_poker.CB, o])
            for o in others
        )
        best[kuhn_poker.C, c] = bet_back > sum(checked[o] * sd[o] for o in others)
        bet_on = {o: q[kuhn_poker.START, o] for o in others}
        call_bet = sum(bet_on[o] * big * sd[o] for o in others)
        best[kuhn_poker.B, c] = call_bet > -sum(bet_on.values())
    return best


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
