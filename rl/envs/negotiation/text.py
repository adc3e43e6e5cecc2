"""Simple Negotiation in text: the prompt's wording and the reply grammar.

The prompt states the player's values and the rules, both inventories, every move so far
(rebuilt from the state's `history` and `events`; with `messages`, each move's free text is
quoted), the pending offer and, on the player's turn, what it may say.

The grammar (TextArena 0.6.4's) reads a whole reply: `[Accept]` / `[Deny]` anywhere
(case-insensitive; Accept wins over Deny) and the first `[Offer: <items> -> <items>]`. Items
are `<qty> <Resource>` pairs found anywhere in a side (so joiners like `,` / `and` do not
matter), after an optional leading "I give" / "I offer" and trailing punctuation; names are
case-insensitive, `Woods` / `Golds` allowed; each quantity must be positive, duplicates add up,
both sides must be non-empty. The colon after `Offer` is required (TextArena 0.7.4 made it
optional). Text with neither is plain talk (`TALK`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from rl.envs.core import INVALID
from rl.envs.negotiation.rules import (
    E_CANCELLED,
    E_DENIED,
    E_INVALID,
    E_OFFER,
    E_TRADE,
    MORE,
    R_ACCEPT,
    R_DENY,
    R_NONE,
    RESOURCES,
    START,
    VALUES,
    decode_int,
    encode,
)
from rl.envs.prompt import Row, outcome, turn

EXAMPLE = "[Offer: 2 Wood -> 1 Gold]"
_MAX_DIGITS = 4300  # Python refuses int() of longer strings; TextArena's parser then fails
_ACCEPT = re.compile(r"\[accept\]", re.IGNORECASE)
_DENY = re.compile(r"\[deny\]", re.IGNORECASE)
_OFFER_START = re.compile(r"\[offer:", re.IGNORECASE)
_BRACKET = re.compile(r"[\[\]]")
_LEADING = re.compile(r"^(i\s+(?:give|offer)\s+)", re.IGNORECASE)
_ARROW = re.compile(r"\s*->\s*")
_ITEM = re.compile(r"(?<!\d)(\d+)\s+([A-Za-z]+)", re.IGNORECASE)  # starts at a digit run
_NAMES = {"Wood": 0, "Woods": 0, "Gold": 1, "Golds": 1}


# ---- prompt ----------------------------------------------------------------------------------


def _qty(n: int, name: str) -> str:
    return f"more than 20 {name}" if n >= MORE else f"{n} {name}"


def offer_text(give: Sequence[int], want: Sequence[int]) -> str:
    """'3 Wood, 1 Gold -> 2 Gold': an offer in the grammar's own form."""

    def side(q):
        return ", ".join(_qty(int(n), RESOURCES[i]) for i, n in enumerate(q) if n > 0)

    return f"{side(give)} -> {side(want)}"


def _move(m: int, state: Row, messages: Sequence[str] | None) -> str:
    ev = state.events[m]
    response, give, want = decode_int(state.history[m])
    parts = []
    if ev & E_INVALID:
        parts.append("made an invalid move")
    if response == R_ACCEPT and ev & E_TRADE:
        parts.append("accepted the offer; the trade was made")
    if ev & E_CANCELLED:
        parts.append("accepted, but the proposer no longer held the goods: trade cancelled")
    if ev & E_DENIED and not ev & E_OFFER:
        parts.append("rejected the offer")
    if ev & E_OFFER:
        parts.append("offered " + offer_text(give, want))
    text = f"  Move {m + 1}, Player {m % 2}: " + ("; ".join(parts) or "no offer") + "."
    if messages is not None and m < len(messages):
        text += f" Said: {messages[m]!r}"
    return text


@functools.cache
def _rules(env: Any, player: int) -> str:
    vals = VALUES[player]
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


def describe(env: Any, state: Row, player: int, messages: Sequence[str] | None = None) -> str:
    """The prompt of `player`; `messages` (the replies so far, one per move) are quoted."""
    vals = VALUES[player].tolist()
    mine, theirs = state.inventory[player], state.inventory[1 - player]
    value = mine[0] * vals[0] + mine[1] * vals[1]
    start = int(START[player] @ VALUES[player])
    lines = [
        _rules(env, player),
        f"Your inventory: {mine[0]} Wood, {mine[1]} Gold (value {value}, gain {value - start:+d}).",
        f"Player {1 - player}'s inventory: {theirs[0]} Wood, {theirs[1]} Gold.",
    ]
    moves = min(state.move_count, env.moves)
    if moves:
        lines.append("Moves so far:")
        lines += [_move(m, state, messages) for m in range(moves)]
    frm = state.offer_from
    if frm >= 0:
        who = "You offer" if frm == player else f"Player {frm} offers you"
        lines.append(f"Pending offer: {who} {offer_text(state.offer_give, state.offer_want)}.")
    if state.terminated:
        return "\n".join(lines + [outcome(state, player)])
    legal = ["[Offer: <what you give> -> <what you want>]", "plain talk (no action)"]
    if frm == 1 - player:
        legal[:0] = ["[Accept]"] * bool(state.legal_action_mask[R_ACCEPT]) + ["[Deny]"]
    lines.append(f"Move {moves + 1} of {env.moves}. " + turn(state, player, legal))
    return "\n".join(lines)


# ---- grammar ---------------------------------------------------------------------------------


def _items(side: str) -> list[int] | None:
    """[wood, gold] quantities of one side of an offer, or None when malformed."""
    pairs = _ITEM.findall(side)
    if not pairs:
        return None
    qty = [0, 0]
    for digits, name in pairs:
        if len(digits) > _MAX_DIGITS:
            return None
        n = int(digits)
        resource = _NAMES.get(name.title())
        if resource is None or n <= 0:
            return None
        qty[resource] += n
    return qty


def offer(body: str) -> tuple[list[int], list[int]] | None:
    """(give, want) of the text inside `[Offer: ...]`, or None when malformed."""
    body = " ".join(body.split()).rstrip(".,!?")
    body = _LEADING.sub("", body)
    sides = _ARROW.split(body)
    if len(sides) != 2:
        return None
    give, want = _items(sides[0].strip()), _items(sides[1].strip())
    if give is None or want is None:
        return None
    return give, want


def find_offer(text: str) -> tuple[str, str] | None:
    """(token, body) of the first `[Offer: body]` with a non-empty body and no bracket inside.

    The same matches as TextArena's regex (`\\[Offer:...([^\\[\\]]+?)...\\]`), in linear time:
    a body runs from the colon to the next bracket, which must be a closing one.
    """
    for start in _OFFER_START.finditer(text):
        close = _BRACKET.search(text, start.end())
        if close is not None and close.group() == "]" and close.start() > start.end():
            return text[start.start() : close.end()], text[start.end() : close.start()]
    return None


def read(text: str) -> tuple[int, str]:
    """The structured action of a negotiation move (plain talk is `TALK`)."""
    if _ACCEPT.search(text):
        response = R_ACCEPT
    elif _DENY.search(text):
        response = R_DENY
    else:
        response = R_NONE
    found = find_offer(text)
    if found is None:
        return encode(response), ""
    token, body = found
    parsed = offer(body.strip())
    if parsed is None:
        return INVALID, (
            f"malformed offer {token[:80]!r}: expected "
            "[Offer: <qty> <Wood|Gold>, ... -> <qty> <Wood|Gold>, ...] with positive quantities"
        )
    give, want = parsed
    return encode(response, give, want), ""
