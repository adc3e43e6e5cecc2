"""Benchmark rl.envs: batched random play vs pgx, per-step speed vs TextArena, text throughput.

    python3 scripts/bench_envs.py            # full run (a few minutes on 2 CPU cores)
    python3 scripts/bench_envs.py --quick    # under a minute

Random play is the same harness for both libraries: one jitted `lax.scan` of T steps over a
batch of B games, each step drawing one uniform per game to pick a legal action
(`random_legal`), stepping, and auto-resetting finished games (ours: `rl.envs.AutoReset`;
pgx: `pgx.experimental.auto_reset`, which draws a reset key per game). Steps/s = B * T / the
best wall time of three compiled runs. Kuhn Poker is our 5-round game vs pgx's one-hand game.

TextArena runs random legal games with a fresh env per game (its observation wrapper keeps
history across resets), timing `get_observation` + `step`. Our text loop does the same work
for a batch: render every prompt, parse every reply, one jitted step.
"""

from __future__ import annotations

import argparse
import random
import time

import jax
import jax.numpy as jnp
import numpy as np

import rl.envs as E
import rl.text as T


def random_legal(key: jax.Array, mask: jax.Array) -> jax.Array:
    """One uniform per game picks a legal action: the k-th True of each mask row, [B]."""
    u = jax.random.uniform(key, mask.shape[:1])
    cum = jnp.cumsum(mask.astype(jnp.int32), axis=1)  # [B, A]
    k = jnp.floor(u * cum[:, -1]).astype(jnp.int32)
    return jnp.argmax(cum > k[:, None], axis=1).astype(jnp.int32)


def _timed(fn, *args, repeats: int = 3) -> float:
    """Best wall time of `repeats` compiled runs (the machine may be shared: take the least
    disturbed run)."""
    jax.block_until_ready(fn(*args))  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def ours_steps_per_s(env, batch: int, steps: int) -> float:
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

    return batch * steps / _timed(run, jax.random.key(0))


def pgx_steps_per_s(name: str, batch: int, steps: int) -> float:
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

    return batch * steps / _timed(run, jax.random.key(0))


def textarena_steps_per_s(game: str, seconds: float) -> float:
    """Random legal games through TextArena: steps/s of get_observation + step."""
    if game == "tictactoe":
        from textarena.envs.TicTacToe.env import TicTacToeEnv as cls

        def reply(env, rng):
            board = env.state.game_state["board"]
            free = [3 * r + c for r in range(3) for c in range(3) if board[r][c] == ""]
            return f"[{rng.choice(free)}]"
    else:
        from textarena.envs.KuhnPoker.env import KuhnPokerEnv as cls

        def reply(env, rng):
            return f"[{rng.choice(list(env.state.game_state['current_legal_action_tree']))}]"

    rng = random.Random(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env = cls() if game == "tictactoe" else cls(max_rounds=5)
        env.reset(num_players=2, seed=steps)
        done = False
        while not done:
            env.get_observation()
            done, _ = env.step(reply(env, rng))
            steps += 1
    return steps / (time.perf_counter() - start)


_RNG = random.Random(0)


def _legal_replies(env, states, rng: random.Random = _RNG) -> list[str]:
    """One '... \\boxed{<random legal move>}' reply per game (as cheap as TextArena's)."""
    names = env.action_names
    masks = np.asarray(states.legal_action_mask).tolist()
    return [
        "I'll play \\boxed{" + rng.choice([names[a] for a, ok in enumerate(m) if ok]) + "}"
        for m in masks
    ]


def text_loop_steps_per_s(env, batch: int, rounds: int) -> float:
    """Render all prompts, parse one reply per game, step the batch (SPIRAL's turn loop)."""
    wrapped = E.AutoReset(env, batch)
    step = jax.jit(wrapped.step)
    states = wrapped.init(jax.random.key(0))
    key = jax.random.key(1)
    moves, start = 0, None
    for r in range(rounds + 1):
        if r == 1:
            start = time.perf_counter()  # round 0 compiles
        T.render_batch(env, states)
        parsed = T.parse_batch(env, states, _legal_replies(env, states))
        key, k = jax.random.split(key)
        states = step(states, jnp.asarray(parsed.actions), k).state
        jax.block_until_ready(states)
        moves += batch if r else 0
    return moves / (time.perf_counter() - start)


def text_ms_per_1000(env, states, replies) -> tuple[float, float]:
    """(render ms, parse ms) for 1,000 games' prompts and replies (second run)."""
    T.parse_batch(env, states, replies)  # compile the rules check
    t0 = time.perf_counter()
    T.render_batch(env, states)
    t1 = time.perf_counter()
    T.parse_batch(env, states, replies)
    t2 = time.perf_counter()
    return 1000 * (t1 - t0), 1000 * (t2 - t1)


def result(name: str, ours: float, peer: float, unit: str, higher_is_better: bool = True) -> None:
    ratio = ours / peer if higher_is_better else peer / ours
    print(f"RESULT {name} ours={ours:.4g} peer={peer:.4g} unit={unit} ratio={ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    args = parser.parse_args()
    batches = (1024,) if args.quick else (1024, 8192)
    steps = 128 if args.quick else 512
    ta_seconds = 1.0 if args.quick else 5.0
    print(f"devices: {jax.devices()}, quick={args.quick}")

    lines = []
    for name, pgx_name, env in (
        ("tictactoe", "tic_tac_toe", E.make("tictactoe")),
        ("kuhn_poker", "kuhn_poker", E.make("kuhn_poker")),
    ):
        for b in batches:
            ours = ours_steps_per_s(env, b, steps)
            peer = pgx_steps_per_s(pgx_name, b, steps)
            lines.append((f"{name}_random_play_b{b}_vs_pgx", ours, peer, "steps/s"))
            print(f"  {name} B={b}: ours {ours:,.0f} steps/s, pgx {peer:,.0f}", flush=True)

    for name in ("tictactoe", "kuhn_poker"):
        env = E.make(name, **({"variant": "textarena"} if name == "kuhn_poker" else {}))
        peer = textarena_steps_per_s(name, ta_seconds)
        ours = text_loop_steps_per_s(env, 1024, 3 if args.quick else 10)
        lines.append((f"{name}_text_loop_b1024_vs_textarena", ours, peer, "steps/s"))
        print(f"  {name} text loop: ours {ours:,.0f} steps/s, TextArena {peer:,.0f}", flush=True)
        states = jax.vmap(env.init)(jax.random.split(jax.random.key(2), 1000))
        render_ms, parse_ms = text_ms_per_1000(env, states, _legal_replies(env, states))
        ta_ms = 1000 * 1000 / peer  # TextArena: observe + parse + step 1,000 replies
        lines.append(
            (f"{name}_render_parse_per_1000_vs_textarena", render_ms + parse_ms, ta_ms, "ms")
        )
        print(f"  {name} per 1,000: render {render_ms:.1f} ms, parse {parse_ms:.1f} ms", flush=True)

    for name, ours, peer, unit in lines:
        result(name, ours, peer, unit, higher_is_better=unit != "ms")


if __name__ == "__main__":
    main()
