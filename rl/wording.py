"""The project's own wording of each game's observation prompt (host side, plain Python).

Every function takes one game as a `Row` (the state's fields as Python scalars and lists,
made for a whole batch at once by `rows`) and the observing player, and returns the rules for
that player, the current position and, on that player's turn, the legal moves in the
bracketed form the grammar reads. TicTacToe shows no move history (as in SPIRAL); Kuhn Poker
and Negotiation list what happened so far, rebuilt from the state (`nodes`, `history`,
`events`), and Negotiation can quote the players' free text. The fixed rules text is built
once per (env, player). Working on Python values, not arrays, keeps a prompt to a few
microseconds.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from types import SimpleNamespace as Row
from typing import Any

import jax
import numpy as np

from rl.envs import kuhn_poker as kp
from rl.envs import negotiation as ng
from rl.envs import tictactoe as ttt


def rows(states: Any) -> list[Row]:
    """One `Row` per game of a batch of states (leading axis B), from one host transfer."""
    host = jax.device_get(states)
    cols = {f.name: np.asarray(getattr(host, f.name)).tolist() for f in dataclasses.fields(host)}
    n = len(cols["terminated"])
    return [Row(**{k: v[i] for k, v in cols.items()}) for i in range(n)]


def _outcome(state: Row, player: int) -> str:
    mine, theirs = state.rewards[player], state.rewards[1 - player]
    if mine > 0:
        return "The game is over: you won."
    if mine < 0:
        return "The game is over: you lost" + (" by an invalid move." if theirs >= 0 else ".")
    if theirs < 0:
        return f"The game is over: Player {1 - player} lost by an invalid move."
    return "The game is over: it is a draw."


def _turn(state: Row, player: int, legal: Sequence[str]) -> str:
    if state.current_player != player:
        return f"It is Player {1 - player}'s turn."
    return "It is your turn. Legal moves: " + ", ".join(legal) + "."


@functools.cache
def _ttt_rules(player: int) -> str:
    return (
        f"Game: Tic-Tac-Toe. You are Player {player} and play {ttt.MARKS[player]}; "
        f"Player {1 - player} plays {ttt.MARKS[1 - player]}.\n"
        "Rules: the players take turns placing their mark in an empty cell of a 3x3 grid, "
        "Player 0 (O) first. Three of one player's marks in a row, a column or a diagonal "
        "win the game; a full grid without such a line is a draw. Choosing a taken cell or "
        "a number outside 0-8 loses the game at once.\n"
        "The cells are numbered 0-8 row by row; an empty cell shows its number.\n\nBoard:\n"
    )


def tictactoe(env: Any, state: Row, player: int) -> str:
    cells = [ttt.MARKS[v] if v >= 0 else str(c) for c, v in enumerate(state.board)]
    board = "\n---+---+---\n".join(" " + " | ".join(cells[r : r + 3]) for r in (0, 3, 6))
    if state.terminated:
        return f"{_ttt_rules(player)}{board}\n\n{_outcome(state, player)}"
    legal = [f"[{c}]" for c, ok in enumerate(state.legal_action_mask) if ok]
    return f"{_ttt_rules(player)}{board}\n\n{_turn(state, player, legal)}"


@functools.cache
def _kuhn_rules(env: Any, player: int) -> str:
    chips = (
        "A bet or a call puts 1 more chip into the pot."
        if env.variant == "standard"
        else "Bets and calls add no chips: the pot is always 2, so a round is worth 1 chip."
    )
    winner = (
        "The winner of the last round wins the game."
        if env.variant == "spiral_v1"
        else "After the last round the player with more chips wins; equal chips is a draw."
    )
    return (
        f"Game: Kuhn Poker. You are Player {player}.\n"
        f"Rules: {env.rounds} rounds. Each round uses a fresh shuffled deck of three cards, "
        "J < Q < K; each player is dealt one card and antes 1 chip, so the pot starts at 2. "
        "Player 1 opens round 1 and the opener alternates every round. The opener may [check] "
        "or [bet]. After a check the other player may [check] (showdown) or [bet]. After a bet "
        "the other player may [call] (showdown) or [fold] (the bettor takes the pot). At a "
        f"showdown the higher card takes the pot. {chips} {winner} A move that is not legal "
        "at that point loses the game.\n"
    )


_VERBS = {"check": "checked", "bet": "bet", "call": "called", "fold": "folded"}


def _kuhn_betting(env: Any, state: Row, r: int) -> str:
    node, first = state.nodes[r], 1 - r % 2
    acts = kp.NODE_NAMES[node].split()
    said = [f"Player {(first + i) % 2} {_VERBS[a]}" for i, a in enumerate(acts)]
    text = ", ".join(said) if said else "no moves yet"
    if not kp.TERMINAL[node]:
        return text
    cards = state.cards[r]
    if kp.SHOWDOWN[node]:
        winner = 0 if cards[0] > cards[1] else 1
        text += f"; showdown: Player 0 had {kp.CARD_NAMES[cards[0]]}, "
        text += f"Player 1 had {kp.CARD_NAMES[cards[1]]}"
    else:
        winner = first if node == kp.BF else 1 - first
    amount = 1 + int(kp.EXTRA[node]) if env.variant == "standard" else 1
    return text + f"; Player {winner} won {amount} chip{'s' if amount > 1 else ''}"


def kuhn_poker(env: Any, state: Row, player: int) -> str:
    done_rounds = min(state.round, env.rounds)
    lines = [_kuhn_rules(env, player)]
    if done_rounds:
        lines.append("Finished rounds:")
        for r in range(done_rounds):
            held = kp.CARD_NAMES[state.cards[r][player]]
            lines.append(f"  Round {r + 1} (you held {held}): {_kuhn_betting(env, state, r)}.")
    mine, theirs = state.chips[player], state.chips[1 - player]
    lines.append(f"Chips so far: you {mine:+d}, opponent {theirs:+d}.")
    if state.terminated:
        return "\n".join(lines + [_outcome(state, player)])
    r = done_rounds
    raised = env.variant == "standard" and state.nodes[r] in (kp.B, kp.CB)
    legal = [kp.ACTION_NAMES[a] for a, ok in enumerate(state.legal_action_mask) if ok]
    lines += [
        f"Round {r + 1} of {env.rounds} (Player {1 - r % 2} opens). "
        f"Your card: {kp.CARD_NAMES[state.cards[r][player]]}. Pot: {3 if raised else 2} chips.",
        f"Betting so far: {_kuhn_betting(env, state, r)}.",
        _turn(state, player, legal),
    ]
    return "\n".join(lines)


def _qty(n: int, name: str) -> str:
    return f"more than 20 {name}" if n >= ng.MORE else f"{n} {name}"


def offer_text(give: Sequence[int], want: Sequence[int]) -> str:
    """'3 Wood, 1 Gold -> 2 Gold': an offer in the grammar's own form."""

    def side(q):
        return ", ".join(_qty(int(n), ng.RESOURCES[i]) for i, n in enumerate(q) if n > 0)

    return f"{side(give)} -> {side(want)}"


def _negotiation_move(m: int, state: Row, messages: Sequence[str] | None) -> str:
    ev = state.events[m]
    response, give, want = ng.decode_int(state.history[m])
    parts = []
    if ev & ng.E_INVALID:
        parts.append("made an invalid move")
    if response == ng.R_ACCEPT and ev & ng.E_TRADE:
        parts.append("accepted the offer; the trade was made")
    if ev & ng.E_CANCELLED:
        parts.append("accepted, but the proposer no longer held the goods: trade cancelled")
    if ev & ng.E_DENIED and not ev & ng.E_OFFER:
        parts.append("rejected the offer")
    if ev & ng.E_OFFER:
        parts.append("offered " + offer_text(give, want))
    text = f"  Move {m + 1}, Player {m % 2}: " + ("; ".join(parts) or "no offer") + "."
    if messages is not None and m < len(messages):
        text += f" Said: {messages[m]!r}"
    return text


@functools.cache
def _negotiation_rules(env: Any, player: int) -> str:
    vals = ng.VALUES[player]
    return (
        f"Game: Negotiation. You are Player {player}.\n"
        f"Rules: two resources, Wood and Gold. You value Wood at {vals[0]} and Gold at "
        f"{vals[1]} per unit; the other player values them differently. The players move in "
        f"turn, Player 0 first, {env.moves} moves in all. A move is any text; these tokens act: "
        "[Offer: 3 Wood, 1 Gold -> 2 Gold] proposes a trade (what you give -> what you want; "
        "it replaces any pending offer), [Accept] takes the offer the other player made you, "
        "[Deny] rejects it. You may only offer what you hold. Accepting an offer you cannot "
        "pay for, accepting your own offer, or a malformed offer loses the game. At the end "
        "the player whose inventory value grew more wins; equal gains are a draw.\n"
    )


def negotiation(env: Any, state: Row, player: int, messages: Sequence[str] | None = None) -> str:
    vals = ng.VALUES[player].tolist()
    mine, theirs = state.inventory[player], state.inventory[1 - player]
    value = mine[0] * vals[0] + mine[1] * vals[1]
    start = int(ng.START[player] @ ng.VALUES[player])
    lines = [
        _negotiation_rules(env, player),
        f"Your inventory: {mine[0]} Wood, {mine[1]} Gold (value {value}, gain {value - start:+d}).",
        f"Player {1 - player}'s inventory: {theirs[0]} Wood, {theirs[1]} Gold.",
    ]
    moves = min(state.move_count, env.moves)
    if moves:
        lines.append("Moves so far:")
        lines += [_negotiation_move(m, state, messages) for m in range(moves)]
    frm = state.offer_from
    if frm >= 0:
        who = "You offer" if frm == player else f"Player {frm} offers you"
        lines.append(f"Pending offer: {who} {offer_text(state.offer_give, state.offer_want)}.")
    if state.terminated:
        return "\n".join(lines + [_outcome(state, player)])
    legal = ["[Offer: <what you give> -> <what you want>]", "plain talk (no action)"]
    if frm == 1 - player:
        legal[:0] = ["[Accept]"] * bool(state.legal_action_mask[ng.R_ACCEPT]) + ["[Deny]"]
    lines.append(f"Move {moves + 1} of {env.moves}. " + _turn(state, player, legal))
    return "\n".join(lines)


WORDING = {"tictactoe": tictactoe, "kuhn_poker": kuhn_poker, "negotiation": negotiation}
