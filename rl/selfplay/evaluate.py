"""Evaluation games against fixed opponents: win / loss / draw / invalid rates per game and role.

`evaluate(policy, params, key, opponent=..., games_per_slot=...)` plays a fixed number of games
per slot (`rollout.collect(episodes_per_slot=...)`), the policy's seat alternating, under the
"eval" invalid-move convention (-1 / +1), and summarises every (game, role) and every game:

    n, win, loss, draw, invalid (fractions of games), moves (mean replies per game, both seats),
    replies (the policy's replies), illegal_replies (the fraction of those that held no legal
    move), reply_tokens (mean generated tokens per policy reply)

An invalid game is one the policy ended with an invalid reply (it also counts as a loss); as
that reply ends the game, `illegal_replies` is the per-reply rate a 95%-legal target reads.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from rl.selfplay import rollout as ro


def summarize(result: ro.Rollout) -> list[dict[str, Any]]:
    """Rows per (game, role) and per game (role "all") from a vs-opponent rollout."""
    groups: dict[tuple[str, Any], list[ro.Episode]] = {}
    for ep in result.episodes:
        (seat,) = ep.model_seats
        groups.setdefault((ep.game, seat), []).append(ep)
        groups.setdefault((ep.game, "all"), []).append(ep)
    rows = []
    for (game, role), eps in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        mine = np.array([ep.returns[ep.model_seats[0]] for ep in eps])
        invalid = np.array([ep.invalid_seat == ep.model_seats[0] for ep in eps])
        mine_samples = [result.samples[i] for ep in eps for i in ep.samples]
        lengths = [len(x.response_ids) for x in mine_samples]
        illegal = sum(not x.valid for x in mine_samples)
        rows.append(
            {
                "game": game,
                "role": role,
                "n": len(eps),
                "win": float(np.mean(mine > 0)),
                "loss": float(np.mean(mine < 0)),
                "draw": float(np.mean(mine == 0)),
                "invalid": float(np.mean(invalid)),
                "moves": float(np.mean([ep.moves for ep in eps])),
                "replies": len(mine_samples),
                "illegal_replies": illegal / max(len(mine_samples), 1),
                "reply_tokens": float(np.mean(lengths)) if lengths else 0.0,
            }
        )
    return rows


def evaluate(
    policy: Any,
    params: Any,
    key: jax.Array,
    *,
    opponent: str,
    games: tuple[str, ...] = ro.GAMES,
    slots: int = 12,
    games_per_slot: int = 2,
    opponent_params: Any = None,
    kuhn_variant: str = "standard",
) -> list[dict[str, Any]]:
    """Rates of the policy against `opponent` ("random", "optimal" or "model")."""
    if opponent == "self":
        raise ro.RolloutError("evaluate: opponent must be 'random', 'optimal' or 'model'")
    config = ro.RolloutConfig(
        games=games, slots=slots, opponent=opponent, convention="eval", kuhn_variant=kuhn_variant
    )
    result = ro.collect(
        policy,
        params,
        key,
        config=config,
        episodes_per_slot=games_per_slot,
        opponent_params=opponent_params,
    )
    rows = summarize(result)
    return [dict(r, opponent=opponent) for r in rows]


def win_rates(rows: list[dict[str, Any]]) -> dict[str, float]:
    """`{game: win rate}` over both roles, from `evaluate`'s rows."""
    return {r["game"]: r["win"] for r in rows if r["role"] == "all"}
