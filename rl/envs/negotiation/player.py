"""The Simple Negotiation corpus player (`rl.transcripts`): a move and the reply that explains it.

Kinds: "random" (accept / deny / counter-offer alike when an offer is pending, else a random
offer of 1-5 of one resource for 1-5 of the other), "heuristic" (accept an offer that raises
its own inventory value, else offer k of its cheaper resource for k of the dearer one: a
fair-looking trade that is only a draw) and "strong" (the heuristic negotiator's rule, asking
k + 1). The reply gives the reason, then boxes the move (`\\boxed{pass}` for plain talk).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl.envs.negotiation.rules import (
    R_ACCEPT,
    R_DENY,
    R_NONE,
    RESOURCES,
    RESPONSE_NAMES,
    VALUES,
    encode,
)
from rl.envs.negotiation.text import offer_text
from rl.envs.prompt import Row

Move = tuple[int, tuple[int, int], tuple[int, int]]  # (response, give, want)


def box(response: int, give=(0, 0), want=(0, 0)) -> str:
    """The boxed text of a move: its response token and offer, as the grammar reads them."""
    parts = [RESPONSE_NAMES[response]] if response else []
    if any(give) or any(want):
        parts.append(f"[Offer: {offer_text(give, want)}]")
    return " ".join(parts)


def random_move(rng: np.random.Generator, row: Row, me: int) -> Move:
    """Accept / deny / counter alike when addressed, else a random offer (1-5 for 1-5)."""
    mine, theirs = row.inventory[me], row.inventory[1 - me]
    addressed = row.offer_from == 1 - me
    kinds = ([0] if addressed and row.legal_action_mask[R_ACCEPT] else []) + [1, 2]
    kind = int(rng.choice(kinds)) if addressed else 2
    if kind < 2:
        return (R_ACCEPT, R_DENY)[kind], (0, 0), (0, 0)

    held = [i for i in (0, 1) if mine[i] > 0]
    if not held:
        return (R_DENY if addressed else R_NONE), (0, 0), (0, 0)
    g = int(rng.choice(held))
    w = 1 - g if theirs[1 - g] > 0 else g
    give, want = [0, 0], [0, 0]
    give[g] = int(rng.integers(1, min(mine[g], 5) + 1))
    want[w] = int(rng.integers(1, min(max(theirs[w], 1), 5) + 1))
    return R_NONE, tuple(give), tuple(want)


def rule_move(rng: np.random.Generator, row: Row, me: int, kind: str) -> Move:
    """The "heuristic" or "strong" move (see the module docstring)."""
    vals = VALUES[me].tolist()
    mine, theirs = row.inventory[me], row.inventory[1 - me]
    addressed = row.offer_from == 1 - me
    receive, pay = row.offer_give, row.offer_want
    affordable = all(m >= p for m, p in zip(mine, pay, strict=True))
    if kind == "heuristic":
        good = sum(v * (r - p) for v, r, p in zip(vals, receive, pay, strict=True)) > 0
    else:
        good = sum(receive) > sum(pay)
    if addressed and affordable and good:
        return R_ACCEPT, (0, 0), (0, 0)
    cheap = int(np.argmin(vals))
    k = min(int(rng.integers(1, 4)), mine[cheap], theirs[1 - cheap] - (kind == "strong"))
    if k < 1:
        return (R_DENY if addressed else R_NONE), (0, 0), (0, 0)
    give, want = [0, 0], [0, 0]
    give[cheap], want[1 - cheap] = k, k + (kind == "strong")
    return (R_DENY if addressed else R_NONE), tuple(give), tuple(want)


def reason(row: Row, me: int, move: Move, kind: str) -> str:
    """What the reply says about the move."""
    response, give, want = move
    vals = VALUES[me].tolist()
    dear = RESOURCES[int(np.argmax(vals))]
    said = []
    if response == R_ACCEPT:
        gain = sum(
            v * (r - p) for v, r, p in zip(vals, row.offer_give, row.offer_want, strict=True)
        )
        said.append(f"Their offer changes my value by {gain:+d}, so I accept.")
    elif response == R_DENY:
        said.append("Their offer does not help me, so I reject it.")
    if any(give):
        if kind == "random":
            said.append(f"I propose {offer_text(give, want)}.")
        else:
            said.append(f"{dear} is worth {max(vals)} to me, so I offer {offer_text(give, want)}.")
    return " ".join(said) or "I have nothing useful to offer now, so I pass."


def play(rng: np.random.Generator, env: Any, row: Row, kind: str) -> tuple[int, str]:
    """(action, reply) of a `kind` player to move in `row`."""
    me = row.current_player
    move = random_move(rng, row, me) if kind == "random" else rule_move(rng, row, me, kind)
    text = box(*move) or "pass"  # plain talk: no action
    return encode(*move), f"{reason(row, me, move, kind)} \\boxed{{{text}}}"
