"""Evaluation games against fixed opponents: win / loss / draw / invalid rates per game and role.

`evaluate(policy, params, key, opponent=..., games_per_slot=...)` plays a fixed number of games
per slot (`rollout.collect(episodes_per_slot=...)`), the policy's seat alternating, under the
"eval" invalid-move convention (-1 / +1), and summarises every (game, role) and every game:

    n, win, loss, draw, invalid (fractions of games), moves (mean replies per game, both seats),
    replies (the policy's replies), illegal_replies (the fraction of those that held no legal
    move), reply_tokens (mean generated tokens per policy reply)

Prompts and the reply check follow `prompt_style` (`rl.styles`; a training run evaluates in
its own style). Replies are sampled with `EVAL_SAMPLING` (SPIRAL's evaluation: temperature 0.6,
top-p 0.95) unless `sampling` says otherwise (None: the policy's own, i.e. its training settings).

An invalid game is one the policy ended with an invalid reply (it also counts as a loss); as
that reply ends the game, `illegal_replies` is the per-reply rate a 95%-legal target reads.

`read_strategy(policy, params, key, game=name)` reads a policy's strategy in a game that
registers a `rl.envs.Strategy` (Kuhn Poker: how often it bets or calls at each betting node
with each card) as a table, which the game's `Strategy.worth` turns into exact figures
(Kuhn Poker: exploitability, chips and win rates against random and Nash play).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxlens
from rl import envs, styles
from rl.envs.core import INVALID
from rl.selfplay import rollout as ro

EVAL_OPPONENTS = tuple(o for o in ro.OPPONENTS if o != "self")
EVAL_SAMPLING = jaxlens.Sampling(temperature=0.6, top_p=0.95)  # SPIRAL's evaluation sampling


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
    games: tuple[str, ...] = envs.BUILTIN,
    slots: int = 12,
    games_per_slot: int = 2,
    opponent_params: Any = None,
    env_options: dict[str, dict[str, Any]] | None = None,
    sampling: jaxlens.Sampling | None = EVAL_SAMPLING,
    prompt_style: str = "builtin",
) -> list[dict[str, Any]]:
    """Rates of the policy against `opponent` ("random", "optimal" or "model"); `env_options`
    as `RolloutConfig.env_options`; `sampling` the policy's sampling in these games (None: its
    own); `prompt_style` as `RolloutConfig.prompt_style`. A frozen "model" opponent samples
    and is prompted as the policy is."""
    if opponent not in EVAL_OPPONENTS:  # self-play is training, not an evaluation
        raise ro.RolloutError(f"evaluate: opponent={opponent!r}: expected one of {EVAL_OPPONENTS}")
    config = ro.RolloutConfig(
        games=games,
        slots=slots,
        opponent=opponent,
        convention="eval",
        env_options=env_options or {},
        prompt_style=prompt_style,
    )
    if sampling is not None:
        policy = policy.with_sampling(sampling)
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


def read_strategy(
    policy: Any,
    params: Any,
    key: jax.Array,
    *,
    game: str,
    samples: int = 64,
    prompt_style: str = "builtin",
) -> dict[str, np.ndarray]:
    """A policy's strategy in `game`, sampled at the positions its `Strategy` names.

    For each row of positions (Kuhn Poker: the first round's betting nodes START, C, B, CB, one
    state per own card), `samples` replies to the acting player's prompt are sampled (one
    `policy.generate` batch of columns x `samples` a row, key `fold_in(key, row)`) and parsed.
    Returns `table` (float [rows, columns]: the fraction of the legal replies that are one of
    `Strategy.counted`; Kuhn Poker: bet or call, the layout of `rl.opponents`' Kuhn tables;
    `Strategy.fallback` where no reply was legal) and `illegal` (float [rows, columns]: the
    fraction of replies with no legal move). Played on the game's default env, prompted and
    checked in `prompt_style` (`rl.styles`; "spiral" plays Kuhn Poker as `spiral_v1`, the
    variant TextArena words).
    """
    if not isinstance(samples, int) or samples < 1:
        raise ro.RolloutError(f"read_strategy samples={samples!r}: expected an int >= 1")
    spec = envs.get(game).strategy
    if spec is None:
        raise ro.RolloutError(f"read_strategy: game {game!r} registers no Strategy")
    env = envs.make(game, **styles.env_options(prompt_style, game))
    table = np.zeros((len(spec.rows), len(spec.columns)))
    illegal = np.zeros_like(table)
    for r, states in enumerate(spec.positions(env)):
        batch = jax.tree.map(lambda *x: jnp.repeat(jnp.stack(x), samples, axis=0), *states)
        n = len(states) * samples
        prompter = styles.prompter(prompt_style, env, n)
        prompter.start(batch, range(n))
        prompts = prompter.render(batch, range(n))
        k_row = jax.random.fold_in(key, r)
        replies = policy.generate(params, prompts, k_row).texts
        parsed = prompter.parse(batch, replies, mode="boxed", key=jax.random.fold_in(k_row, 1))
        actions = parsed.actions.reshape(len(states), samples)
        legal = (actions != INVALID).sum(axis=1)
        counted = np.isin(actions, spec.counted).sum(axis=1)
        table[r] = np.where(legal > 0, counted / np.maximum(legal, 1), spec.fallback)
        illegal[r] = 1 - legal / samples
    return {"table": table, "illegal": illegal}
