"""Benchmark rl.envs: batched random play vs pgx, per-step speed vs TextArena, text throughput.

    python3 scripts/bench_envs.py            # full run (about a minute on 2 CPU cores)
    python3 scripts/bench_envs.py --quick    # under a minute

Random play is the same harness for both libraries: one jitted `lax.scan` of T steps over a
batch of B games, each step drawing one uniform per game to pick a legal action
(`random_legal`), stepping, and auto-resetting finished games (ours: `rl.envs.AutoReset`;
pgx: `pgx.experimental.auto_reset`, which draws a reset key per game). Steps/s = B * T / the
best of several alternating compiled runs. Kuhn Poker is our 5-round game vs pgx's one-hand game.
`PEERS` maps each compared game to its pgx name and its TextArena version.

TextArena runs random legal games with a fresh env per game (its observation wrapper keeps
history across resets), timing `get_observation` + `step`. Our text loop does the same work
for a batch of 1,024 games: render every prompt, parse every reply (SPIRAL's boxed format),
one jitted step ("env steps" compares TextArena with our batched random play instead). Both
are timed in alternating chunks of ~1,024 moves, best chunk reported.
"render + parse per 1,000" compares our render + parse time for 1,000 replies with
TextArena's time for 1,000 steps (its observation + parse + rules).

Ends with `RESULT` lines (ratio > 1: ours better) and writes a run folder (`--run`, default
runs/bench_envs[_quick]).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import NamedTuple

import _bench
import jax
import jax.numpy as jnp
import numpy as np

import rl.envs as E
import rl.text as T
from jaxlens.runs import progress


def random_legal(key: jax.Array, mask: jax.Array) -> jax.Array:
    """One uniform per game picks a legal action: the k-th True of each mask row, [B]."""
    u = jax.random.uniform(key, mask.shape[:1])
    cum = jnp.cumsum(mask.astype(jnp.int32), axis=1)  # [B, A]
    k = jnp.floor(u * cum[:, -1]).astype(jnp.int32)
    return jnp.argmax(cum > k[:, None], axis=1).astype(jnp.int32)


def best_times(fns: dict, rounds: int) -> dict:
    """Best wall time of each compiled `fn(key)` over `rounds` alternating runs.

    The machine may be shared: alternating the contenders exposes them to the same load, and
    the best run is the least disturbed one.
    """
    key = jax.random.key(0)
    calls = {name: (lambda fn=fn: jax.block_until_ready(fn(key))) for name, fn in fns.items()}
    return _bench.interleaved_seconds(calls, rounds)  # the warm-up call compiles


def ours_random_play(env, batch: int, steps: int):
    """Jitted `key -> reward sum` playing `steps` batched random moves with auto-reset."""
    wrapped = E.AutoReset(env, batch)

    def body(state, key):
        k_act, k_reset = jax.random.split(key)
        actions = random_legal(k_act, state.legal_action_mask)
        tr = wrapped.step(state, actions, k_reset)
        return tr.state, tr.rewards[:, 0].sum()

    @jax.jit
    def run(key):
        state = wrapped.init(key)
        _, r = jax.lax.scan(body, state, jax.random.split(key, steps))
        return r.sum()

    return run


def pgx_random_play(name: str, batch: int, steps: int):
    """The same harness over a pgx env and pgx's auto-reset wrapper."""
    import pgx
    from pgx.experimental import auto_reset

    env = pgx.make(name)
    step = auto_reset(env.step, env.init)

    def body(state, key):
        k_act, k_reset = jax.random.split(key)
        actions = random_legal(k_act, state.legal_action_mask)
        state = jax.vmap(step)(state, actions, jax.random.split(k_reset, batch))
        return state, state.rewards[:, 0].sum()

    @jax.jit
    def run(key):
        state = jax.vmap(env.init)(jax.random.split(key, batch))
        _, r = jax.lax.scan(body, state, jax.random.split(key, steps))
        return r.sum()

    return run


def _textarena_tictactoe():
    from textarena.envs.TicTacToe.env import TicTacToeEnv

    return TicTacToeEnv


def _textarena_kuhn():
    from textarena.envs.KuhnPoker.env import KuhnPokerEnv

    return lambda: KuhnPokerEnv(max_rounds=5)


def _free_cell(game_state: dict, rng: random.Random) -> str:
    board = game_state["board"]
    free = [3 * r + c for r in range(3) for c in range(3) if board[r][c] == ""]
    return f"[{rng.choice(free)}]"


def _kuhn_move(game_state: dict, rng: random.Random) -> str:
    return f"[{rng.choice(list(game_state['current_legal_action_tree']))}]"


class Peer(NamedTuple):
    """One of our games and its peers' versions of it."""

    pgx: str  # pgx's name of the game
    options: dict  # our env options that match TextArena's rules
    textarena: Callable[[], Callable]  # -> a constructor of a fresh TextArena env
    reply: Callable[[dict, random.Random], str]  # a random legal move from TextArena's state


PEERS = {
    "tictactoe": Peer("tic_tac_toe", {}, _textarena_tictactoe, _free_cell),
    "kuhn_poker": Peer("kuhn_poker", {"variant": "textarena"}, _textarena_kuhn, _kuhn_move),
}


class TextArenaPlayer:
    """Random legal games through TextArena, a fresh env per game; timed in chunks."""

    def __init__(self, game: str):
        self.new = PEERS[game].textarena()
        self.move = PEERS[game].reply
        self.game = game
        self.rng = random.Random(0)
        self.env, self.games = None, 0

    def _reply(self) -> str:
        return self.move(self.env.state.game_state, self.rng)

    def chunk(self, steps: int) -> tuple[int, float]:
        """(steps, seconds) of `get_observation` + `step` for at least `steps` moves."""
        done_steps, start = 0, time.perf_counter()
        while done_steps < steps:
            if self.env is None:
                self.env = self.new()
                self.env.reset(num_players=2, seed=self.games)
                self.games += 1
            self.env.get_observation()
            done, _ = self.env.step(self._reply())
            done_steps += 1
            if done:
                self.env = None
        return done_steps, time.perf_counter() - start


_RNG = random.Random(0)


def _legal_replies(env, states, rng: random.Random = _RNG) -> list[str]:
    """One '... \\boxed{<random legal move>}' reply per game (as cheap as TextArena's)."""
    names = env.action_names
    masks = np.asarray(states.legal_action_mask).tolist()
    return [
        "I'll play \\boxed{" + rng.choice([names[a] for a, ok in enumerate(m) if ok]) + "}"
        for m in masks
    ]


class TextLoop:
    """SPIRAL's turn loop on a batch: render every prompt, parse a reply per game, step."""

    def __init__(self, env, batch: int):
        self.env, self.batch = env, batch
        wrapped = E.AutoReset(env, batch)
        self.step = jax.jit(wrapped.step)
        self.states = wrapped.init(jax.random.key(0))
        self.key = jax.random.key(1)
        self.chunk()  # compile

    def chunk(self) -> tuple[int, float]:
        start = time.perf_counter()
        T.render_batch(self.env, self.states)
        parsed = T.parse_batch(self.env, self.states, _legal_replies(self.env, self.states))
        self.key, k = jax.random.split(self.key)
        self.states = self.step(self.states, jnp.asarray(parsed.actions), k).state
        jax.block_until_ready(self.states)
        return self.batch, time.perf_counter() - start


def text_loop_vs_textarena(env, game: str, rounds: int) -> tuple[float, float]:
    """(ours, TextArena) steps/s: best of `rounds` alternating chunks of ~1,024 moves each."""
    ours, theirs = TextLoop(env, 1024), TextArenaPlayer(game)
    best_ours = best_theirs = 0.0
    for _ in range(rounds):
        n, t = ours.chunk()
        best_ours = max(best_ours, n / t)
        n, t = theirs.chunk(1024)
        best_theirs = max(best_theirs, n / t)
    return best_ours, best_theirs


def text_ms_per_1000(env, rounds: int) -> tuple[float, float]:
    """(render ms, parse ms) for 1,000 games' prompts and replies, best of `rounds`."""
    states = jax.vmap(env.init)(jax.random.split(jax.random.key(2), 1000))
    replies = _legal_replies(env, states)
    T.parse_batch(env, states, replies)  # compile the rules check
    render = parse = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        T.render_batch(env, states)
        t1 = time.perf_counter()
        T.parse_batch(env, states, replies)
        t2 = time.perf_counter()
        render, parse = min(render, t1 - t0), min(parse, t2 - t1)
    return 1000 * render, 1000 * parse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _bench.add_run_args(parser, "bench_envs")
    args = parser.parse_args()
    run = _bench.open_run("bench_envs", args)
    batches = (1024,) if args.quick else (1024, 8192)
    steps = 128 if args.quick else 512
    rounds = 3 if args.quick else 7
    print(f"devices: {jax.devices()}, quick={args.quick}")

    lines, raw = [], {}
    for name, peer in PEERS.items():
        env, pgx_name = E.make(name), peer.pgx
        for b in progress(batches, desc=f"{name} random play", unit="batch size"):
            runs = {
                "ours": ours_random_play(env, b, steps),
                "pgx": pgx_random_play(pgx_name, b, steps),
            }
            best = best_times(runs, rounds)
            ours, peer = b * steps / best["ours"], b * steps / best["pgx"]
            lines.append((f"{name}_random_play_b{b}_vs_pgx", ours, peer, "steps/s"))
            raw[name] = (b, ours)
            print(f"  {name} B={b}: ours {ours:,.0f} steps/s, pgx {peer:,.0f}", flush=True)

    for name, peer in PEERS.items():
        env = E.make(name, **peer.options)
        ours, peer = text_loop_vs_textarena(env, name, 5 if args.quick else 20)
        b, ours_raw = raw[name]
        lines.append((f"{name}_env_steps_b{b}_vs_textarena", ours_raw, peer, "steps/s"))
        lines.append((f"{name}_text_loop_b1024_vs_textarena", ours, peer, "steps/s"))
        print(f"  {name} text loop: ours {ours:,.0f} steps/s, TextArena {peer:,.0f}", flush=True)
        render_ms, parse_ms = text_ms_per_1000(env, rounds)
        ta_ms = 1000 * 1000 / peer  # TextArena: observe + parse + step 1,000 replies
        lines.append(
            (f"{name}_render_parse_per_1000_vs_textarena", render_ms + parse_ms, ta_ms, "ms")
        )
        print(f"  {name} per 1,000: render {render_ms:.1f} ms, parse {parse_ms:.1f} ms", flush=True)

    results = [_bench.Result(n, o, p, u, higher_is_better=u != "ms") for n, o, p, u in lines]
    _bench.finish(run, results, "rl.envs: random play vs pgx, text loop vs TextArena")


if __name__ == "__main__":
    main()
