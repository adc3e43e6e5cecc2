"""Game transcripts for the built-in model's training corpus: prompts as self-play sends them.

    for conv in rl.transcripts.game_conversations(seed=0, n=4000):
        conv  # [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]

Each acting turn of a generated game becomes one two-message conversation. The user message is
`rl.text.render(env, state, player)`, exactly the prompt SPIRAL self-play sends (no quoted
negotiation messages). The reply first restates what the prompt allows, copied from the
prompt's legal moves, so a small model reads the legal set before it chooses (TicTacToe: the
free cells with the chosen one starred, "Free cells: 0, 1*, 5."; Kuhn Poker: "I hold Q and may
[call] or [fold]."), then one or two short sentences of reasoning that describe the move really
chosen (in TicTacToe naming no cell: the starred one is the only digit to copy), then the move
as `\\boxed{[4]}` (`rl.text.parse` reads it back to the recorded legal action).

Players. Each seat of each game gets a player drawn from `PLAYER_MIX` (independently per seat):

- `"random"`: uniform over the legal moves (Negotiation: accept / deny / counter-offer alike
  when an offer is pending, else a random offer of 1-5 of one resource for 1-5 of the other).
- `"heuristic"`: simple rules. TicTacToe: win, else block, else centre, corner, side.
  Kuhn Poker: bet or call with K, check / call with Q, check / fold with J. Negotiation: accept
  an offer that raises its own inventory value, else offer k of its cheaper resource for k of the
  dearer one (a fair-looking trade that is only a draw).
- `"strong"`: near-optimal with noise: with probability `NOISE` a random legal move, else
  TicTacToe minimax (`rl.opponents.minimax_table`), the Kuhn Nash equilibrium
  (`rl.opponents.KuhnNash`, alpha 1/6), the heuristic negotiator (`rl.opponents`).

Each game writes its own turns: its registered corpus player (`Game.player(rng, env, row,
kind)`, in the game's package: `rl.envs.tictactoe.player`, ...) chooses the move and words the
reply; this module only deals the seats, applies the noise (a "strong" player that draws a
random move plays as "random" for that turn) and walks the game (`Game.corpus_options` are
its env options).

So the corpus teaches legal moves and the reply format, while most moves are far from optimal:
self-play has room to improve. Kuhn Poker uses the standard rules (the variant self-play uses).
Games are generated round-robin over `games` (default the built-in ones, `rl.envs.BUILTIN`);
everything follows from `seed` (numpy `PCG64` for choices and text, a JAX key per game for the
Kuhn deal).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from rl import envs, text
from rl.envs.prompt import row as host_row

GAMES = envs.BUILTIN
PLAYER_MIX = {"random": 0.4, "heuristic": 0.35, "strong": 0.25}  # P(kind) per seat
NOISE = 0.2  # P(random move) of a "strong" player


class Turn(NamedTuple):
    """One acting turn: the prompt, the reply and the action it encodes."""

    player: int
    prompt: str
    reply: str
    action: int


class Transcript(NamedTuple):
    """One generated game: enough to replay it (`envs.make(game, **options).init(key)`)."""

    game: str
    options: dict[str, Any]
    key_seed: int  # the game starts from env.init(jax.random.PRNGKey(key_seed))
    kinds: tuple[str, str]  # the player kind of each seat
    turns: list[Turn]
    returns: tuple[float, float]


def _check_games(games: Sequence[str]) -> tuple[str, ...]:
    games = envs.check_names(games, "games")
    silent = [g for g in games if envs.get(g).player is None]
    if silent:
        raise ValueError(f"games={games!r}: {silent} register no corpus player (Game.player)")
    return games


@functools.cache
def _stepper(env: Any):
    return jax.jit(env.step)


def _kind(rng: np.random.Generator, kind: str) -> str:
    """The kind that moves this turn: a "strong" player plays a random move with P = NOISE."""
    return "random" if kind == "strong" and rng.random() < NOISE else kind


# ---- games -----------------------------------------------------------------------------------


def play_game(game: str, rng: np.random.Generator, kinds: tuple[str, str]) -> Transcript:
    """One game between players of `kinds` (seat 0, seat 1), every choice drawn from `rng`."""
    spec = envs.get(game)
    options = dict(spec.corpus_options)
    env = spec.make(**options)
    key_seed = int(rng.integers(2**31 - 1))
    state = jax.device_get(env.init(jax.random.PRNGKey(key_seed)))
    step, turns, returns = _stepper(env), [], np.zeros(2)
    for _ in range(env.max_moves):
        row = host_row(state)
        if row.terminated:
            break
        player = row.current_player
        prompt = text.render(env, state, player)
        action, reply = spec.player(rng, env, row, _kind(rng, kinds[player]))
        turns.append(Turn(player, prompt, reply, int(action)))
        state = jax.device_get(step(state, action))
        returns += np.asarray(state.rewards)
    return Transcript(game, options, key_seed, kinds, turns, tuple(returns.tolist()))


def transcripts(
    *, seed: int, games: Sequence[str] = GAMES, mix: dict[str, float] | None = None
) -> Iterator[Transcript]:
    """An endless, deterministic stream of games, round-robin over `games`."""
    games = _check_games(games)
    mix = dict(PLAYER_MIX if mix is None else mix)
    if (
        not mix
        or any(k not in PLAYER_MIX or p < 0 for k, p in mix.items())
        or not sum(mix.values())
    ):
        raise ValueError(f"mix={mix!r}: expected non-negative weights over {sorted(PLAYER_MIX)}")
    names, probs = list(mix), np.array(list(mix.values()), float) / sum(mix.values())
    rng = np.random.default_rng(seed)
    i = 0
    while True:
        kinds = tuple(names[j] for j in rng.choice(len(names), size=2, p=probs))
        yield play_game(games[i % len(games)], rng, kinds)
        i += 1


def game_conversations(
    *, seed: int, games: Sequence[str] = GAMES, n: int = 4000, mix: dict[str, float] | None = None
) -> Iterator[list[dict]]:
    """`n` user/assistant conversations, one per acting turn of generated games."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r}: expected an int >= 0")
    if n == 0:
        return
    count = 0
    for game in transcripts(seed=seed, games=games, mix=mix):
        for turn in game.turns:
            yield [
                {"role": "user", "content": turn.prompt},
                {"role": "assistant", "content": turn.reply},
            ]
            count += 1
            if count == n:
                return
