"""Batched multi-turn rollout: `slots` games of several types advanced turn by turn.

Slot `i` plays game `games[i % len(games)]` for its whole life; the slots of one game form a
`[B_g]` batch of env states, stepped with one jitted call per game per turn. Each turn:

1. every game group reports who is to move; rows whose mover is the policy get their prompt
   (`rl.text.render_batch`), the others their fixed opponent's move (a jitted, vmapped
   `rl.opponents` policy, or the replies of a frozen model);
2. all the policy's prompts, across game types, go through one `ModelPolicy.generate` call of
   fixed batch size (`slots` rows) - one compiled program per prompt-width bucket;
3. replies are parsed (`rl.text.parse_batch`, SPIRAL's boxed format check), the envs step, and a
   reply that fails the check ends its game with the convention's penalty (`rl.envs.forfeit`);
4. finished games are recorded and their slots reset in place from fresh keys.

Modes (`RolloutConfig.opponent`): `"self"` (the policy plays both seats: SPIRAL self-play),
`"random"`, `"optimal"` (TicTacToe minimax, Kuhn Nash, the heuristic negotiator), `"model"` (a
frozen checkpoint's params, `opponent_params`). Against an opponent the policy's seat alternates
per slot and per episode, so both roles are played equally.

Every policy turn becomes a `Sample` (prompt ids, response ids, sampling logprobs, game, role,
turn, episode). Only samples of finished games are returned: `collect` stops once it holds
`min_samples` of them (training) or once every slot has finished `episodes_per_slot` games
(evaluation: a fixed number of games per slot, so short games are not over-represented).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rl import envs, opponents, text
from rl.envs.core import PENALTIES

GAMES = ("tictactoe", "kuhn_poker", "negotiation")
OPPONENTS = ("self", "random", "optimal", "model")


class RolloutError(ValueError):
    """Bad rollout settings."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """What is played.

    Attributes:
      games: game names of `rl.envs.make`, assigned to slots round-robin.
      slots: games played side by side (also the generate batch size).
      opponent: "self", "random", "optimal" or "model" (see the module docstring).
      convention: invalid-reply rewards, a key of `rl.envs.PENALTIES` ("spiral" for training,
        "eval" for evaluation).
      kuhn_variant: Kuhn Poker rules ("standard", "spiral_v1", "textarena").
    """

    games: tuple[str, ...] = GAMES
    slots: int = 12
    opponent: str = "self"
    convention: str = "spiral"
    kuhn_variant: str = "standard"

    def __post_init__(self):
        object.__setattr__(self, "games", tuple(self.games))
        bad = [g for g in self.games if g not in GAMES]
        if not self.games or bad:
            raise RolloutError(f"games={self.games!r}: expected a non-empty subset of {GAMES}")
        if not isinstance(self.slots, int) or self.slots < len(self.games):
            raise RolloutError(
                f"slots={self.slots!r}: expected an int >= the number of games ({len(self.games)})"
            )
        if self.opponent not in OPPONENTS:
            raise RolloutError(f"opponent={self.opponent!r}: expected one of {OPPONENTS}")
        if self.convention not in PENALTIES:
            raise RolloutError(
                f"convention={self.convention!r}: expected one of {sorted(PENALTIES)}"
            )
        envs.make("kuhn_poker", variant=self.kuhn_variant)  # validates the variant


class Sample(NamedTuple):
    """One policy turn."""

    prompt_ids: np.ndarray  # int32 [P]: chat-template prompt
    response_ids: np.ndarray  # int32 [R]: generated ids, stop token included
    logprobs: np.ndarray  # float32 [R]: sampling log-probabilities
    game: str
    role: int  # the seat that moved
    turn: int  # the game's move count when the reply was made
    episode: int  # index into `Rollout.episodes`
    text: str
    valid: bool  # the reply held a legal move


class Episode(NamedTuple):
    """One finished game."""

    game: str
    returns: tuple[float, float]
    moves: int  # replies made (both seats)
    invalid_seat: int  # the seat whose reply was invalid (ending the game), else -1
    model_seats: tuple[int, ...]  # seats the policy played
    samples: tuple[int, ...]  # indices into `Rollout.samples`, in turn order


class Rollout(NamedTuple):
    samples: list[Sample]
    episodes: list[Episode]
    timing: dict[str, float]  # seconds spent in "generate", "env", "text"
    turns: int  # batched turns played
    replies: int  # policy replies generated (finished games or not)
    reply_tokens: int  # tokens in those replies


def make_env(game: str, kuhn_variant: str = "standard") -> Any:
    return envs.make(game, variant=kuhn_variant) if game == "kuhn_poker" else envs.make(game)


def fixed_policy(env: Any, kind: str) -> Any:
    """The single-state opponent policy `(key, state) -> action` of a kind."""
    if kind == "random":
        return opponents.RandomLegal(env)
    return {
        "tictactoe": opponents.Minimax,
        "kuhn_poker": opponents.KuhnNash,
        "negotiation": opponents.HeuristicNegotiator,
    }[env.name]()


@functools.cache
def _jitted(env: Any, kind: str | None, penalty: tuple[float, float]):
    def apply(states, actions, ok, key, may_reset):
        """(stepped states, the same with finished games in `may_reset` rows restarted)."""
        stepped = jax.vmap(env.step)(states, actions)
        lost = jax.vmap(lambda s: envs.forfeit(s, penalty))(states)
        pick = lambda c: lambda a, b: jnp.where(c.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
        new = jax.tree.map(pick(ok), stepped, lost)
        fresh = env.init_batch(key, actions.shape[0])
        return new, jax.tree.map(pick(may_reset & new.terminated), fresh, new)

    def opponent(key, states):
        policy = fixed_policy(env, kind)
        keys = jax.random.split(key, states.terminated.shape[0])
        return jax.vmap(policy)(keys, states)

    return (
        jax.jit(apply),
        (jax.jit(opponent) if kind else None),
        jax.jit(env.init_batch, static_argnums=1),
    )


class _Group:
    """The slots of one game: batched states plus per-slot host bookkeeping."""

    def __init__(self, game, slots, cfg, key):
        self.game, self.slots = game, np.asarray(slots)
        self.env = make_env(game, cfg.kuhn_variant)
        kind = cfg.opponent if cfg.opponent in ("random", "optimal") else None
        self.apply, self.opponent, init = _jitted(self.env, kind, PENALTIES[cfg.convention])
        n = len(slots)
        self.states = init(key, n)
        self.returns = np.zeros((n, 2))
        self.moves = np.zeros(n, int)
        self.invalid = np.full(n, -1)
        self.done_count = np.zeros(n, int)
        self.idle = np.zeros(n, bool)
        self.buffer: list[list[Sample]] = [[] for _ in range(n)]
        self.selfplay = cfg.opponent == "self"

    def model_seat(self, j: int) -> int:
        return int((j + self.done_count[j]) % 2)

    def seats(self, j: int) -> tuple[int, ...]:
        return (0, 1) if self.selfplay else (self.model_seat(j),)


def collect(
    policy: Any,
    params: Any,
    key: jax.Array,
    *,
    config: RolloutConfig,
    min_samples: int | None = None,
    episodes_per_slot: int | None = None,
    opponent_params: Any = None,
    max_turns: int = 100_000,
) -> Rollout:
    """Play until `min_samples` finished-game samples, or `episodes_per_slot` games per slot."""
    if (min_samples is None) == (episodes_per_slot is None):
        raise RolloutError("collect: give exactly one of min_samples and episodes_per_slot")
    if config.opponent == "model" and opponent_params is None:
        raise RolloutError("collect: opponent='model' needs opponent_params")
    key, k_init = jax.random.split(key)
    names = config.games
    groups = [
        _Group(g, [i for i in range(config.slots) if names[i % len(names)] == g], config, k)
        for g, k in zip(names, jax.random.split(k_init, len(names)), strict=True)
    ]
    samples: list[Sample] = []
    episodes: list[Episode] = []
    timing = {"generate": 0.0, "env": 0.0, "text": 0.0}
    turns = replies_made = reply_tokens = 0
    while turns < max_turns:
        key, k_gen, k_opp, k_step = jax.random.split(key, 4)
        turns += 1
        t0 = time.perf_counter()
        movers = [np.asarray(jax.device_get(g.states.current_player)) for g in groups]
        timing["env"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        prompts, opp_prompts, where, opp_where = [], [], [], []
        for gi, g in enumerate(groups):
            rendered = None
            for j in range(len(g.slots)):
                if g.idle[j]:
                    continue
                mine = int(movers[gi][j]) in g.seats(j)
                if mine or config.opponent == "model":
                    rendered = rendered or text.render_batch(g.env, g.states)
                    (prompts if mine else opp_prompts).append(rendered[j])
                    (where if mine else opp_where).append((gi, j))
        timing["text"] += time.perf_counter() - t0
        replies: dict[tuple[int, int], tuple] = {}
        for batch, places, p, mine, k in (
            (prompts, where, params, True, k_gen),
            (opp_prompts, opp_where, opponent_params, False, k_opp),
        ):
            if not batch:
                continue
            out = policy.generate(p, batch, k, rows=config.slots)
            timing["generate"] += out.seconds
            replies_made += len(batch)
            reply_tokens += sum(len(t) for t in out.tokens[: len(batch)])
            for n, place in enumerate(places):
                ids = policy.encode(batch[n])
                replies[place] = (ids, out.tokens[n], out.logprobs[n], out.texts[n], mine)
        keys = jax.random.split(k_step, 2 * len(groups))
        for gi, g in enumerate(groups):
            _advance(
                g,
                gi,
                replies,
                keys[2 * gi],
                keys[2 * gi + 1],
                config,
                timing,
                samples,
                episodes,
                episodes_per_slot,
            )
        if min_samples is not None and len(samples) >= min_samples:
            break
        if all(g.idle.all() for g in groups):
            break
    return Rollout(samples, episodes, timing, turns, replies_made, reply_tokens)


def _advance(g, gi, replies, k_opp, k_reset, config, timing, samples, episodes, per_slot):
    """Parse this group's replies, step its envs, close and reset finished games."""
    n = len(g.slots)
    t0 = time.perf_counter()
    texts = [replies[(gi, j)][3] if (gi, j) in replies else "" for j in range(n)]
    mode = "env" if config.convention == "env" else "boxed"
    parsed = text.parse_batch(g.env, g.states, texts, mode=mode)
    timing["text"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    from_reply = np.array([(gi, j) in replies for j in range(n)])
    if g.opponent is not None:
        opp = np.asarray(g.opponent(k_opp, g.states))
        actions = np.where(from_reply, parsed.actions, opp)
    else:
        actions = parsed.actions
    ok = np.where(from_reply, parsed.format_ok, True)
    host = jax.device_get(g.states)
    movers, before = np.asarray(host.current_player), np.asarray(host.move_count)
    live = ~np.asarray(host.terminated) & ~g.idle
    last = np.zeros(n, bool) if per_slot is None else g.done_count + 1 >= per_slot
    stepped, g.states = g.apply(
        g.states,
        jnp.asarray(actions, jnp.int32),
        jnp.asarray(ok),
        k_reset,
        jnp.asarray(live & ~last),
    )
    rewards, ended = jax.device_get((stepped.rewards, stepped.terminated))
    timing["env"] += time.perf_counter() - t0
    for j in np.flatnonzero(live):
        g.returns[j] += rewards[j]
        g.moves[j] += 1
        valid = bool(parsed.format_ok[j]) and parsed.actions[j] != text.INVALID
        if from_reply[j] and not valid:
            g.invalid[j] = movers[j]
        entry = replies.get((gi, j))
        if entry is not None and entry[4]:
            ids, toks, lps, reply, _ = entry
            g.buffer[j].append(
                Sample(
                    np.asarray(ids, np.int32),
                    toks,
                    lps,
                    g.game,
                    int(movers[j]),
                    int(before[j]),
                    -1,
                    reply,
                    valid,
                )
            )
    finished = live & np.asarray(ended)
    for j in np.flatnonzero(finished):
        first = len(samples)
        ep = len(episodes)
        samples.extend(s._replace(episode=ep) for s in g.buffer[j])
        episodes.append(
            Episode(
                g.game,
                tuple(float(x) for x in g.returns[j]),
                int(g.moves[j]),
                int(g.invalid[j]),
                g.seats(j),
                tuple(range(first, len(samples))),
            )
        )
        g.buffer[j], g.returns[j], g.moves[j], g.invalid[j] = [], 0.0, 0, -1
        g.done_count[j] += 1
        if per_slot is not None and g.done_count[j] >= per_slot:
            g.idle[j] = True
