"""Evaluation games against fixed opponents: win / loss / draw / invalid rates per game and role.

`evaluate(policy, params, key, opponent=..., games_per_slot=...)` plays a fixed number of games
per slot (`rollout.collect(episodes_per_slot=...)`), the policy's seat alternating, under the
"eval" invalid-move convention (-1 / +1), and summarises every (game, role) and every game:

    n, win, loss, draw, invalid (fractions of games), moves (mean replies per game, both seats),
    replies (the policy's replies), illegal_replies (the fraction of those that held no legal
    move), reply_tokens (mean generated tokens per policy reply)

An invalid game is one the policy ended with an invalid reply (it also counts as a loss); as
that reply ends the game, `illegal_replies` is the per-reply rate a 95%-legal target reads.

`kuhn_strategy(policy, params, key)` reads a policy's Kuhn Poker strategy as a table (how often
it bets or calls at each betting node with each card), which `rl.opponents`' exact calculators
turn into its exploitability and its win rate against any table player (`kuhn_strategy_report`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rl import envs, opponents, text
from rl.envs import kuhn_poker as K
from rl.envs.core import INVALID
from rl.selfplay import rollout as ro

EVAL_OPPONENTS = tuple(o for o in ro.OPPONENTS if o != "self")


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
    if opponent not in EVAL_OPPONENTS:  # self-play is training, not an evaluation
        raise ro.RolloutError(f"evaluate: opponent={opponent!r}: expected one of {EVAL_OPPONENTS}")
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


# The moves that lead from a round's start to each betting node.
_KUHN_PATHS = {K.START: (), K.C: (K.CHECK,), K.B: (K.BET,), K.CB: (K.CHECK, K.BET)}


def _kuhn_node_states(env: Any, node: int) -> list[Any]:
    """States at betting `node` of round 1, one per card (J, Q, K) of the player to act."""
    opener = int(K.opener(jnp.int32(0)))
    actor = opener if node in (K.START, K.CB) else 1 - opener
    states = []
    for card in range(3):
        deal = [card, (card + 1) % 3][:: 1 if actor == 0 else -1]
        state = env.init(jax.random.key(0))
        state = state.replace(cards=state.cards.at[0].set(jnp.asarray(deal, state.cards.dtype)))
        for action in _KUHN_PATHS[node]:
            state = env.step(state, action)
        states.append(state)
    return states


def kuhn_strategy(
    policy: Any, params: Any, key: jax.Array, *, samples: int = 64
) -> dict[str, np.ndarray]:
    """The policy's Kuhn Poker strategy, sampled at the first round's betting nodes.

    For each node (START, C, B, CB: `rl.envs.kuhn_poker`) and own card, `samples` replies to the
    player's prompt are sampled (one `policy.generate` batch of 3 x `samples` a node) and
    parsed. Returns `table` (float [4 nodes, 3 cards]: the fraction of the legal replies that bet
    at START / C or call at B / CB, the layout of `rl.opponents`' Kuhn tables; 0.5 where no reply
    was legal) and `illegal` (float [4, 3]: the fraction of replies with no legal move). Later
    rounds' prompts add the chips so far; this reads the strategy of a fresh game.
    """
    if not isinstance(samples, int) or samples < 1:
        raise ro.RolloutError(f"kuhn_strategy samples={samples!r}: expected an int >= 1")
    env = envs.make("kuhn_poker")
    table = opponents.kuhn_random_table()  # a cell with no legal reply stays at random play
    illegal = np.zeros((4, 3))
    for node in _KUHN_PATHS:
        states = _kuhn_node_states(env, node)
        prompts = [text.render(env, s, int(s.current_player)) for s in states]
        replies = policy.generate(
            params, [p for p in prompts for _ in range(samples)], jax.random.fold_in(key, node)
        ).texts
        batch = jax.tree.map(lambda *x: jnp.repeat(jnp.stack(x), samples, axis=0), *states)
        actions = text.parse_batch(env, batch, replies).actions.reshape(3, samples)
        legal = (actions != INVALID).sum(axis=1)
        aggressive = np.isin(actions, (K.BET, K.CALL)).sum(axis=1)
        table[node] = np.where(legal > 0, aggressive / np.maximum(legal, 1), 0.5)
        illegal[node] = 1 - legal / samples
    return {"table": table, "illegal": illegal}


def kuhn_strategy_report(table: np.ndarray, rounds: int = 5) -> dict[str, float]:
    """What a strategy table is worth, exactly (standard chips, both seats averaged):
    `exploitability` (chips per round a best response wins against it), `chips_vs_random` and
    `chips_vs_nash` (its chips per round against those players), and `win_vs_random` /
    `win_vs_nash` (the probability of winning a `rounds`-round game, every round played with
    the table)."""
    random = opponents.kuhn_random_table()
    nash = opponents.KuhnNash().aggressive()

    def win(other: np.ndarray) -> float:
        seats = (opponents.kuhn_match_outcome(table, other, seat=s, rounds=rounds) for s in (0, 1))
        return float(np.mean([w for w, _, _ in seats]))

    return {
        "exploitability": opponents.kuhn_exploitability(table),
        "chips_vs_random": opponents.kuhn_chips_per_round(table, random),
        "chips_vs_nash": opponents.kuhn_chips_per_round(table, nash),
        "win_vs_random": win(random),
        "win_vs_nash": win(nash),
    }
