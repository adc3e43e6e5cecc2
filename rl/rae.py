"""Role-conditioned advantage estimation (RAE), SPIRAL's variance reduction for self-play.

One policy plays both seats of several games, and the seats are not symmetric (the first mover
in TicTacToe, the opener in Kuhn Poker), so one return means different things per seat. RAE
keeps a baseline per (game, role), an exponential moving average of that seat's returns:

    A = R - b[game, role]                  # with the baseline before this game's update
    b[game, role] <- alpha * b + (1 - alpha) * R

applied one finished game at a time, in order; missing baselines start at 0. Every turn of that
player in that game gets the same advantage (no discount), and samples whose advantage is 0 are
dropped by the learner.

Ablations (`baseline=`): `"role"` (RAE, the default), `"global"` (one EMA shared by all games
and roles) and `"none"` (A = R, the setting in which SPIRAL's responses collapse).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

BASELINES = ("role", "global", "none")
GLOBAL_KEY = ("*", -1)  # the one key of the "global" ablation


class RAEError(ValueError):
    """Bad input to `advantages` (mismatched lengths, alpha outside [0, 1], unknown mode)."""


def advantages(
    returns: Sequence[float],
    games: Sequence[Hashable],
    roles: Sequence[int],
    baselines: Mapping[tuple[Hashable, int], float],
    *,
    alpha: float = 0.95,
    baseline: str = "role",
) -> tuple[np.ndarray, dict[tuple[Hashable, int], float]]:
    """Advantages of finished games, in order, and the updated baselines.

    Args:
      returns: `[G]` each game's return for the player (`R_p`).
      games / roles: `[G]` the game name and the player's role (seat) of each entry.
      baselines: `(game, role) -> float` before these games (not modified; missing keys are 0).
      alpha: EMA decay (SPIRAL: 0.95).
      baseline: "role" (RAE), "global" or "none" (see the module docstring).

    Returns:
      `(advantages float32 [G], new baselines)`.
    """
    n = len(returns)
    if len(games) != n or len(roles) != n:
        raise RAEError(
            f"advantages: returns, games and roles must have equal lengths; got {n}, "
            f"{len(games)}, {len(roles)}"
        )
    if not 0.0 <= float(alpha) <= 1.0:
        raise RAEError(f"alpha={alpha!r}: expected a float in [0, 1]")
    if baseline not in BASELINES:
        raise RAEError(f"baseline={baseline!r}: expected one of {BASELINES}")
    table = dict(baselines)
    out = np.zeros(n, np.float32)
    for i, (r, game, role) in enumerate(zip(returns, games, roles, strict=True)):
        r = float(r)
        if baseline == "none":
            out[i] = r
            continue
        key = (game, int(role)) if baseline == "role" else GLOBAL_KEY
        old = table.get(key, 0.0)
        out[i] = r - old
        table[key] = alpha * old + (1.0 - alpha) * r
    return out, table
