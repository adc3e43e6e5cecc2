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

So the corpus teaches legal moves and the reply format, while most moves are far from optimal:
self-play has room to improve. Kuhn Poker uses the standard rules (the variant self-play uses).
Games are generated round-robin over `games`; everything follows from `seed` (numpy `PCG64`
for choices and text, a JAX key per game for the Kuhn deal).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from rl import envs, text, wording
from rl.envs import kuhn_poker as kp
from rl.envs import negotiation as ng
from rl.envs import tictactoe as ttt
from rl.opponents import KuhnNash, minimax_table

GAMES = ("tictactoe", "kuhn_poker", "negotiation")
PLAYER_MIX = {"random": 0.4, "heuristic": 0.35, "strong": 0.25}  # P(kind) per seat
NOISE = 0.2  # P(random move) of a "strong" player
ENV_OPTIONS: dict[str, dict[str, Any]] = {
    "tictactoe": {},
    "kuhn_poker": {"variant": "standard"},
    "negotiation": {},
}


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
    games = tuple(games)
    bad = [g for g in games if g not in GAMES]
    if not games or bad:
        raise ValueError(f"games={games!r}: expected a non-empty subset of {GAMES}")
    return games


@functools.cache
def _stepper(env: Any):
    return jax.jit(env.step)


def _row(state: Any) -> Any:
    (row,) = wording.rows(jax.tree.map(lambda x: np.asarray(x)[None], state))
    return row


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


# ---- TicTacToe -------------------------------------------------------------------------------


def _ttt_line_move(board: list[int], who: int) -> int | None:
    """A free cell completing a line of `who`, or None."""
    for line in ttt.LINES.tolist():
        marks = [board[c] for c in line]
        if marks.count(who) == 2 and marks.count(-1) == 1:
            return line[marks.index(-1)]
    return None


def _ttt_heuristic(board: list[int], me: int, legal: list[int]) -> int:
    for who in (me, 1 - me):
        found = _ttt_line_move(board, who)
        if found is not None:
            return found
    for group in ([4], [0, 2, 6, 8], [1, 3, 5, 7]):
        free = [c for c in group if c in legal]
        if free:
            return free[0]
    return legal[0]


def _ttt_reason(rng: np.random.Generator, board: list[int], me: int, cell: int, kind: str) -> str:
    """Why the starred cell was chosen, in words without cell numbers: the move's only digit
    is the starred one, so the boxed move has one place to copy it from."""
    if kind == "random":
        return _pick(
            rng, ["That cell is free, so I take it.", "I will play there.", "Let me try that one."]
        )
    if _ttt_line_move(board, me) == cell:
        return "That cell completes my line and wins."
    if _ttt_line_move(board, 1 - me) == cell:
        return "The opponent has two in a line; I must block it."
    if cell == 4:
        return "No line is threatened. The centre is the strongest cell and it is free."
    if cell in (0, 2, 6, 8):
        return "No line is threatened, so I take a corner."
    return "No line is threatened; a side cell keeps my options open."


def _ttt_move(rng, env, row, kind) -> tuple[int, str]:
    me, board = row.current_player, row.board
    legal = [c for c, ok in enumerate(row.legal_action_mask) if ok]
    if kind == "random" or (kind == "strong" and rng.random() < NOISE):
        cell, said = int(rng.choice(legal)), "random"
    elif kind == "heuristic":
        cell, said = _ttt_heuristic(board, me, legal), kind
    else:
        idx = int(np.dot(np.array(board) + 1, 3 ** np.arange(9)))
        best = [c for c in legal if minimax_table()[idx, c]] or legal
        cell, said = int(rng.choice(best)), kind
    # The chosen cell is starred while the free cells are copied out: a small model then picks
    # by marking an item of a list it copies exactly, instead of naming a digit afterwards
    # (which, sampled at temperature 1, leaked to taken cells about one reply in ten). The star
    # follows the digit so the copied tokens stay those of the plain list.
    free = ", ".join(f"{c}*" if c == cell else str(c) for c in legal)
    return (
        cell,
        f"Free cells: {free}. {_ttt_reason(rng, board, me, cell, said)} \\boxed{{[{cell}]}}",
    )


# ---- Kuhn Poker ------------------------------------------------------------------------------

_KUHN_WHY = {  # (card, action) -> why a heuristic / strong player does it
    (0, kp.CHECK): "J is the lowest card, so I check.",
    (0, kp.BET): "J rarely wins a showdown, but a bluff now and then keeps them guessing: I bet.",
    (0, kp.FOLD): "J loses to any card that calls a bet, so I fold.",
    (0, kp.CALL): "J is weak, but I call to keep them honest.",
    (1, kp.CHECK): "Q is a middle card; I check and see what happens.",
    (1, kp.BET): "Q beats J, so I bet.",
    (1, kp.CALL): "Q beats a bluffing J, so I call.",
    (1, kp.FOLD): "Q loses to K, and a bet often means K, so I fold.",
    (2, kp.CHECK): "K is the best card; I check to let them bet into me.",
    (2, kp.BET): "K is the highest card, so I bet.",
    (2, kp.CALL): "K cannot lose a showdown, so I call.",
    (2, kp.FOLD): "I fold.",
}


def _kuhn_situation(card: int, legal: list[int]) -> str:
    a, b = (kp.ACTION_NAMES[x] for x in legal)
    return f"I hold {kp.CARD_NAMES[card]} and may {a} or {b}."


def _kuhn_move(rng, env, row, kind) -> tuple[int, str]:
    r = min(row.round, env.rounds - 1)
    card, node = row.cards[r][row.current_player], row.nodes[r]
    legal = [a for a, ok in enumerate(row.legal_action_mask) if ok]
    opening = node in (kp.START, kp.C)
    if kind == "random" or (kind == "strong" and rng.random() < NOISE):
        action = int(rng.choice(legal))
        name = kp.ACTION_NAMES[action][1:-1]
        why = _pick(rng, [f"I will {name}.", f"Let me {name} this time.", f"I {name}."])
        return action, f"{_kuhn_situation(card, legal)} {why} \\boxed{{{kp.ACTION_NAMES[action]}}}"
    if kind == "heuristic":
        strong = card == 2 or (card == 1 and not opening)
        action = (kp.BET if strong else kp.CHECK) if opening else (kp.CALL if strong else kp.FOLD)
    else:
        p = KuhnNash().aggressive()[min(node, 3), card]
        aggressive = rng.random() < p
        action = (
            (kp.BET if aggressive else kp.CHECK)
            if opening
            else (kp.CALL if aggressive else kp.FOLD)
        )
    why = _KUHN_WHY[(card, action)]
    return action, f"{_kuhn_situation(card, legal)} {why} \\boxed{{{kp.ACTION_NAMES[action]}}}"


# ---- Negotiation -----------------------------------------------------------------------------


def _offer_box(response: int, give=(0, 0), want=(0, 0)) -> str:
    parts = [ng.RESPONSE_NAMES[response]] if response else []
    if any(give) or any(want):
        parts.append(f"[Offer: {wording.offer_text(give, want)}]")
    return " ".join(parts)


def _neg_random(rng, row, me) -> tuple[int, tuple, tuple]:
    mine, theirs = row.inventory[me], row.inventory[1 - me]
    addressed = row.offer_from == 1 - me
    kinds = ([0] if addressed and row.legal_action_mask[ng.R_ACCEPT] else []) + [1, 2]
    kind = int(rng.choice(kinds)) if addressed else 2
    if kind < 2:
        return (ng.R_ACCEPT, ng.R_DENY)[kind], (0, 0), (0, 0)

    held = [i for i in (0, 1) if mine[i] > 0]
    if not held:
        return (ng.R_DENY if addressed else ng.R_NONE), (0, 0), (0, 0)
    g = int(rng.choice(held))
    w = 1 - g if theirs[1 - g] > 0 else g
    give, want = [0, 0], [0, 0]
    give[g] = int(rng.integers(1, min(mine[g], 5) + 1))
    want[w] = int(rng.integers(1, min(max(theirs[w], 1), 5) + 1))
    return ng.R_NONE, tuple(give), tuple(want)


def _neg_rule(rng, row, me, kind) -> tuple[int, tuple, tuple]:
    vals = ng.VALUES[me].tolist()
    mine, theirs = row.inventory[me], row.inventory[1 - me]
    addressed = row.offer_from == 1 - me
    receive, pay = row.offer_give, row.offer_want
    affordable = all(m >= p for m, p in zip(mine, pay, strict=True))
    if kind == "heuristic":
        good = sum(v * (r - p) for v, r, p in zip(vals, receive, pay, strict=True)) > 0
    else:
        good = sum(receive) > sum(pay)
    if addressed and affordable and good:
        return ng.R_ACCEPT, (0, 0), (0, 0)
    cheap = int(np.argmin(vals))
    k = min(int(rng.integers(1, 4)), mine[cheap], theirs[1 - cheap] - (kind == "strong"))
    if k < 1:
        return (ng.R_DENY if addressed else ng.R_NONE), (0, 0), (0, 0)
    give, want = [0, 0], [0, 0]
    give[cheap], want[1 - cheap] = k, k + (kind == "strong")
    return (ng.R_DENY if addressed else ng.R_NONE), tuple(give), tuple(want)


def _neg_reason(row, me, response, give, want, kind) -> str:
    vals = ng.VALUES[me].tolist()
    dear = ng.RESOURCES[int(np.argmax(vals))]
    said = []
    if response == ng.R_ACCEPT:
        gain = sum(
            v * (r - p) for v, r, p in zip(vals, row.offer_give, row.offer_want, strict=True)
        )
        said.append(f"Their offer changes my value by {gain:+d}, so I accept.")
    elif response == ng.R_DENY:
        said.append("Their offer does not help me, so I reject it.")
    if any(give):
        if kind == "random":
            said.append(f"I propose {wording.offer_text(give, want)}.")
        else:
            said.append(
                f"{dear} is worth {max(vals)} to me, so I offer {wording.offer_text(give, want)}."
            )
    return " ".join(said) or "I have nothing useful to offer now, so I pass."


def _neg_move(rng, env, row, kind) -> tuple[int, str]:
    me = row.current_player
    if kind == "random" or (kind == "strong" and rng.random() < NOISE):
        response, give, want = _neg_random(rng, row, me)
        kind = "random"
    else:
        response, give, want = _neg_rule(rng, row, me, kind)
    box = _offer_box(response, give, want) or "pass"  # plain talk: no action
    action = ng.encode(response, give, want)
    return action, f"{_neg_reason(row, me, response, give, want, kind)} \\boxed{{{box}}}"


_MOVERS = {"tictactoe": _ttt_move, "kuhn_poker": _kuhn_move, "negotiation": _neg_move}


# ---- games -----------------------------------------------------------------------------------


def play_game(game: str, rng: np.random.Generator, kinds: tuple[str, str]) -> Transcript:
    """One game between players of `kinds` (seat 0, seat 1), every choice drawn from `rng`."""
    options = ENV_OPTIONS[game]
    env = envs.make(game, **options)
    key_seed = int(rng.integers(2**31 - 1))
    state = jax.device_get(env.init(jax.random.PRNGKey(key_seed)))
    step, turns, returns = _stepper(env), [], np.zeros(2)
    for _ in range(env.max_moves):
        row = _row(state)
        if row.terminated:
            break
        player = row.current_player
        prompt = text.render(env, state, player)
        action, reply = _MOVERS[game](rng, env, row, kinds[player])
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
