"""Exact Kuhn Poker arithmetic over strategy tables (no sampling).

A strategy table is float `[4 nodes, 3 cards]`: the probability of the aggressive move (bet at
START / C, call at B / CB; `rl.envs.kuhn_poker.rules` nodes) per betting node and own card
J, Q, K, played every round. From two tables these functions give a round's exact chip
distribution over the 6 deals (`kuhn_round_outcomes`), a whole game's win / draw / loss
probabilities (`kuhn_match_outcome`), chips a round over both seats (`kuhn_chips_per_round`),
the best response to a table by backward induction (`kuhn_best_response`) and what it wins
(`kuhn_exploitability`). `kuhn_random_table()` is the uniformly random player.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rl.envs.core import EnvError
from rl.envs.kuhn_poker.rules import CB, DEALS, START, B, C
from rl.envs.kuhn_poker.rules import opener as round_opener


def kuhn_random_table() -> np.ndarray:
    """The uniformly random player as a Kuhn table: each of the two legal moves half the time."""
    return np.full((4, 3), 0.5)


def _showdown(mine: int, theirs: int) -> int:
    return 1 if mine > theirs else -1


def _kuhn_table(table: np.ndarray, what: str) -> np.ndarray:
    """`table` as float64 [4 nodes, 3 cards] of probabilities, or a clear error."""
    t = np.asarray(table, np.float64)
    if t.shape != (4, 3) or not np.all((t >= 0) & (t <= 1)):
        raise EnvError(
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
    `KuhnNash.aggressive()`: float [4 nodes, 3 cards] of P(bet or call))."""
    opener = _kuhn_table(opener, "kuhn_round_outcomes opener")
    responder = _kuhn_table(responder, "kuhn_round_outcomes responder")
    big = 2 if bets_add_chips else 1  # chips at a called showdown
    out: dict[int, float] = {}

    def add(chips: int, p: float) -> None:
        out[chips] = out.get(chips, 0.0) + p / len(DEALS)

    for a, b in DEALS.astype(int):
        bet0, bet1 = float(opener[START, a]), float(responder[C, b])
        call1, call0 = float(responder[B, b]), float(opener[CB, a])
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
        raise EnvError(f"kuhn_match_outcome seat={seat!r}: expected 0 or 1")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise EnvError(f"kuhn_match_outcome rounds={rounds!r}: expected an int >= 1")
    as_opener = kuhn_round_outcomes(table, opponent, bets_add_chips)
    as_responder = {-c: p for c, p in kuhn_round_outcomes(opponent, table, bets_add_chips).items()}
    chips = {0: 1.0}  # distribution of the player's net chips so far
    for r in range(rounds):
        step = as_opener if int(round_opener(jnp.int32(r))) == seat else as_responder
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
        call = sum(q[C, o] * big * sd[o] for o in others)
        fold = -sum(q[C, o] for o in others)
        best[CB, c] = call > fold
        after_cb = {o: big * sd[o] if call > fold else -1 for o in others}
        # Opener's first move.
        bet = sum(q[B, o] * big * sd[o] + 1 - q[B, o] for o in others)
        check = sum((1 - q[C, o]) * sd[o] + q[C, o] * after_cb[o] for o in others)
        best[START, c] = bet > check
        # Responder: the opener's card weighted by how likely it checked (C) or bet (B).
        checked = {o: 1 - q[START, o] for o in others}
        bet_back = sum(checked[o] * (q[CB, o] * big * sd[o] + 1 - q[CB, o]) for o in others)
        best[C, c] = bet_back > sum(checked[o] * sd[o] for o in others)
        bet_on = {o: q[START, o] for o in others}
        call_bet = sum(bet_on[o] * big * sd[o] for o in others)
        best[B, c] = call_bet > -sum(bet_on.values())
    return best
