"""Batched multi-turn rollout: `slots` games of several types advanced turn by turn.

Slot `i` plays game `games[i % len(games)]` for its whole life; the slots of one game form a
`[B_g]` batch of env states, stepped with one jitted call per game per turn. Each turn:

1. every game group reports who is to move; rows whose mover is the policy get their prompt
   in the config's prompt style (`rl.styles`: "builtin", `rl.text.render_batch`; "spiral",
   SPIRAL's template around TextArena's observation text), the others their fixed
   opponent's move (a jitted, vmapped `rl.opponents` policy, or the replies of a frozen model);
2. all the policy's prompts, across game types, go through one `ModelPolicy.generate` call of
   fixed batch size (`slots` rows) - one compiled program per prompt-width bucket;
3. replies are parsed (the style's check: `rl.text.parse_batch`'s boxed format check, or
   SPIRAL's action list), the envs step, and a reply that fails the check ends its game with
   the convention's penalty (`rl.envs.forfeit`);
4. finished games are recorded and their slots reset in place from fresh keys.

Any registered game can be played (`rl.envs.GAMES`; default the built-in ones): the envs come
from `rl.envs.make(game, **config.env_options.get(game, {}))`, prompts and parsing from
`rl.text`, fixed opponents from `rl.opponents.fixed_policy`, so nothing here depends on which
games are played.

Modes (`RolloutConfig.opponent`): `"self"` (the policy plays both seats: SPIRAL self-play),
`"random"`, `"optimal"` (each game's registered optimal opponent: TicTacToe minimax, Kuhn Nash,
the heuristic negotiator), `"model"` (a frozen checkpoint's params, `opponent_params`). Against
an opponent the policy's seat alternates per slot and per episode, so both roles are played
equally.

Every policy turn becomes a `Sample` (prompt ids, response ids, sampling logprobs, game, role,
turn, episode). Only samples of finished games are returned: `collect` stops once it holds
`min_samples` of them (training) or once every slot has finished `episodes_per_slot` games
(evaluation: a fixed number of games per slot, so short games are not over-represented).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rl import envs, opponents, styles, text
from rl.envs.batch import step_or_forfeit, tree_where
from rl.envs.core import PENALTIES

OPPONENTS = ("self", "random", "optimal", "model")


class RolloutError(ValueError):
    """Bad rollout settings."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """What is played.

    Attributes:
      games: registered game names (`rl.envs.GAMES`), assigned to slots round-robin.
      slots: games played side by side (also the generate batch size).
      opponent: "self", "random", "optimal" or "model" (see the module docstring).
      convention: invalid-reply rewards, a key of `rl.envs.PENALTIES` ("spiral" for training,
        "eval" for evaluation).
      env_options: `{game: {option: value}}`, each game's env options for `rl.envs.make`
        (e.g. `{"kuhn_poker": {"variant": "spiral_v1"}}`); games not named use their defaults.
      prompt_style: how prompts are worded and replies checked, a name in `rl.styles.STYLES`:
        "builtin" (this project's wording, the built-in model's) or "spiral" (SPIRAL's template
        around TextArena's observation text, SPIRAL's check; needs textarena==0.7.4).
    """

    games: tuple[str, ...] = envs.BUILTIN
    slots: int = 12
    opponent: str = "self"
    convention: str = "spiral"
    env_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    prompt_style: str = "builtin"

    def __post_init__(self):
        object.__setattr__(self, "games", envs.check_names(self.games, "games"))
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
        options = {g: dict(o) for g, o in dict(self.env_options).items()}
        stray = sorted(set(options) - set(self.games))
        if stray:
            raise RolloutError(f"env_options names {stray}: not among games={self.games}")
        object.__setattr__(self, "env_options", options)
        made = [self.make_env(game) for game in self.games]  # validates the options
        try:
            styles.check_games(self.prompt_style, made)
        except (styles.StyleError, envs.EnvError) as e:
            raise RolloutError(f"RolloutConfig.prompt_style: {e}") from None

    def make_env(self, game: str) -> Any:
        """The env of `game` with its `env_options`."""
        return envs.make(game, **self.env_options.get(game, {}))


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


def concat(a: Rollout, b: Rollout) -> Rollout:
    """`b` after `a` as one rollout (`b`'s sample and episode indices shifted)."""
    ns, ne = len(a.samples), len(a.episodes)
    return Rollout(
        a.samples + [s._replace(episode=s.episode + ne) for s in b.samples],
        a.episodes + [e._replace(samples=tuple(i + ns for i in e.samples)) for e in b.episodes],
        {k: a.timing.get(k, 0.0) + b.timing.get(k, 0.0) for k in {*a.timing, *b.timing}},
        a.turns + b.turns,
        a.replies + b.replies,
        a.reply_tokens + b.reply_tokens,
    )


class Reply(NamedTuple):
    """A generated reply waiting for its game's step."""

    ids: list[int]  # the prompt's chat-template ids
    tokens: np.ndarray
    logprobs: np.ndarray
    text: str
    mine: bool  # the policy's reply (False: the frozen model opponent's)


@functools.cache
def _jitted(env: Any, kind: str | None, penalty: tuple[float, float]):
    def apply(states, actions, ok, key, may_reset):
        """(stepped states, the same with finished games in `may_reset` rows restarted)."""
        new = step_or_forfeit(env, states, actions, ok, penalty)
        fresh = env.init_batch(key, actions.shape[0])
        return new, tree_where(may_reset & new.terminated, fresh, new)

    def opponent(key, states):
        policy = opponents.fixed_policy(env, kind)
        keys = jax.random.split(key, states.terminated.shape[0])
        return jax.vmap(policy)(keys, states)

    return (
        jax.jit(apply),
        (jax.jit(opponent) if kind else None),
        jax.jit(env.init_batch, static_argnums=1),
    )


class _Group:
    """The slots of one game: batched states plus per-slot host bookkeeping."""

    def __init__(self, gi, game, slots, cfg, key):
        self.gi, self.game, self.slots = gi, game, np.asarray(slots)
        self.env = cfg.make_env(game)
        kind = cfg.opponent if cfg.opponent in opponents.KINDS else None
        self.apply, self.opponent, init = _jitted(self.env, kind, PENALTIES[cfg.convention])
        n = len(slots)
        self.states = init(key, n)
        self.prompter = styles.prompter(cfg.prompt_style, self.env, n)
        self.prompter.start(self.states, range(n))
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


class _Log:
    """What `collect` accumulates: finished samples and episodes, timing and counters."""

    def __init__(self):
        self.samples: list[Sample] = []
        self.episodes: list[Episode] = []
        self.timing = {"generate": 0.0, "env": 0.0, "text": 0.0}
        self.turns = self.replies = self.reply_tokens = 0

    def rollout(self) -> Rollout:
        return Rollout(
            self.samples, self.episodes, self.timing, self.turns, self.replies, self.reply_tokens
        )


def _groups(config: RolloutConfig, key: jax.Array) -> list[_Group]:
    """One `_Group` per game, slot `i` playing `games[i % len(games)]`."""
    names = config.games
    return [
        _Group(gi, g, [i for i in range(config.slots) if names[i % len(names)] == g], config, k)
        for gi, (g, k) in enumerate(zip(names, jax.random.split(key, len(names)), strict=True))
    ]


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
    groups = _groups(config, k_init)
    log = _Log()
    while log.turns < max_turns:
        key, k_gen, k_opp, k_step = jax.random.split(key, 4)
        log.turns += 1
        asked = _prompts(groups, config, log.timing)
        replies = {}
        for (prompts, places), p, mine, k in zip(
            asked, (params, opponent_params), (True, False), (k_gen, k_opp), strict=True
        ):
            replies.update(_generate(policy, p, prompts, places, mine, k, config.slots, log))
        keys = jax.random.split(k_step, 2 * len(groups))
        for g in groups:
            _advance(g, replies, keys[2 * g.gi], keys[2 * g.gi + 1], config, episodes_per_slot, log)
        if min_samples is not None and len(log.samples) >= min_samples:
            break
        if all(g.idle.all() for g in groups):
            break
    return log.rollout()


Asked = tuple[list[str], list[tuple[int, int]]]  # prompts and their (group, slot) places


def _prompts(groups: list[_Group], config: RolloutConfig, timing: dict) -> tuple[Asked, Asked]:
    """The prompts of this turn: (the policy's, the frozen model opponent's)."""
    t0 = time.perf_counter()
    movers = [np.asarray(jax.device_get(g.states.current_player)) for g in groups]
    timing["env"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    mine: Asked = ([], [])
    theirs: Asked = ([], [])
    for g, mover in zip(groups, movers, strict=True):
        asking = [
            (j, int(mover[j]) in g.seats(j))
            for j in range(len(g.slots))
            if not g.idle[j] and (int(mover[j]) in g.seats(j) or config.opponent == "model")
        ]
        rendered = g.prompter.render(g.states, [j for j, _ in asking]) if asking else []
        for (j, own), prompt in zip(asking, rendered, strict=True):
            prompts, places = mine if own else theirs
            prompts.append(prompt)
            places.append((g.gi, j))
    timing["text"] += time.perf_counter() - t0
    return mine, theirs


def _generate(policy, params, prompts, places, mine, key, rows, log: _Log) -> dict:
    """`{(group, slot): Reply}` for one batch of prompts (none when there are no prompts)."""
    if not prompts:
        return {}
    out = policy.generate(params, prompts, key, rows=rows)
    log.timing["generate"] += out.seconds
    log.replies += len(prompts)
    log.reply_tokens += sum(len(t) for t in out.tokens[: len(prompts)])
    return {
        place: Reply(policy.encode(prompts[n]), out.tokens[n], out.logprobs[n], out.texts[n], mine)
        for n, place in enumerate(places)
    }


class _Stepped(NamedTuple):
    """One group's move, as the bookkeeping needs it (host arrays, `[n]` slots)."""

    parsed: text.Parsed
    from_reply: np.ndarray  # bool: the move came from a generated reply
    movers: np.ndarray  # who moved
    before: np.ndarray  # move count before the move
    live: np.ndarray  # bool: the slot's game was running
    rewards: np.ndarray  # [n, 2]
    ended: np.ndarray  # bool: the game is over after the move


def _step(g: _Group, replies: dict, k_opp, k_reset, config, per_slot, timing) -> _Stepped:
    """Parse this group's replies (or ask its fixed opponent), step its envs, reset finished
    games that will be played again; returns what happened."""
    n = len(g.slots)
    t0 = time.perf_counter()
    texts = [replies[(g.gi, j)].text if (g.gi, j) in replies else "" for j in range(n)]
    mode = "env" if config.convention == "env" else "boxed"
    parsed = g.prompter.parse(g.states, texts, mode=mode, key=k_opp)
    timing["text"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    from_reply = np.array([(g.gi, j) in replies for j in range(n)])
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
    t0 = time.perf_counter()
    ended = np.asarray(ended)
    g.prompter.advance(
        actions,
        from_reply,
        stepped,
        np.flatnonzero(live & ~ended),
        g.states,
        np.flatnonzero(live & ended & ~last),
    )
    timing["text"] += time.perf_counter() - t0
    return _Stepped(parsed, from_reply, movers, before, live, rewards, ended)


def _advance(g: _Group, replies, k_opp, k_reset, config, per_slot, log: _Log) -> None:
    """Play one turn of group `g`: step it, record the turn, close and reset finished games."""
    out = _step(g, replies, k_opp, k_reset, config, per_slot, log.timing)
    _record(g, replies, out)
    for j in np.flatnonzero(out.live & out.ended):
        _close(g, j, per_slot, log)


def _record(g: _Group, replies: dict, out: _Stepped) -> None:
    """Add this move to each live slot's returns and counts, and buffer the policy's sample."""
    for j in np.flatnonzero(out.live):
        g.returns[j] += out.rewards[j]
        g.moves[j] += 1
        valid = bool(out.parsed.format_ok[j]) and out.parsed.actions[j] != text.INVALID
        if out.from_reply[j] and not valid:
            g.invalid[j] = out.movers[j]
        reply = replies.get((g.gi, j))
        if reply is not None and reply.mine:
            sample = Sample(
                np.asarray(reply.ids, np.int32),
                reply.tokens,
                reply.logprobs,
                g.game,
                int(out.movers[j]),
                int(out.before[j]),
                -1,
                reply.text,
                valid,
            )
            g.buffer[j].append(sample)


def _close(g: _Group, j: int, per_slot: int | None, log: _Log) -> None:
    """Move slot `j`'s finished game into the log and start its bookkeeping afresh."""
    first, ep = len(log.samples), len(log.episodes)
    log.samples.extend(s._replace(episode=ep) for s in g.buffer[j])
    returns = tuple(float(x) for x in g.returns[j])
    samples = tuple(range(first, len(log.samples)))
    log.episodes.append(
        Episode(g.game, returns, int(g.moves[j]), int(g.invalid[j]), g.seats(j), samples)
    )
    g.buffer[j], g.returns[j], g.moves[j], g.invalid[j] = [], 0.0, 0, -1
    g.done_count[j] += 1
    if per_slot is not None and g.done_count[j] >= per_slot:
        g.idle[j] = True
