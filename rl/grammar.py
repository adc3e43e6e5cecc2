"""The games' action grammars: free text -> action id, as the envs read a move (docs/games.md).

These are the env-level readers (TextArena's): they look at the whole text and never raise.
Each returns `(action, reason)`: an action id of the game (maybe still illegal in the
current position; the env's `check` decides that) or `INVALID` with the reason it could not be
read.

- TicTacToe: the first `[<digits>]`, spaces allowed inside the brackets. Numbers outside 0-8
  come back as they are (or 10**6 when huge) so `check` can say "outside 0-8".
- Kuhn Poker: the first `[check]`, `[bet]`, `[call]` or `[fold]`, any letter case.
- Negotiation: `[Accept]` / `[Deny]` anywhere (case-insensitive; Accept wins over Deny) and the
  first `[Offer: <items> -> <items>]`. Items are `<qty> <Resource>` pairs found anywhere in a
  side (so joiners like `,` / `and` do not matter), after an optional leading "I give" /
  "I offer" and trailing punctuation; names are case-insensitive, `Woods` / `Golds` allowed;
  each quantity must be positive, duplicates add up, both sides must be non-empty. The colon
  after `Offer` is required (TextArena 0.6.4; 0.7.4 made it optional).
"""

from __future__ import annotations

import re

from rl.envs import kuhn_poker, negotiation
from rl.envs.core import INVALID

HUGE = 10**6  # stands for any number too long to be a real move
_MAX_DIGITS = 4300  # Python refuses int() of longer strings; TextArena's parser then fails

_CELL = re.compile(r"\[\s*(\d+)\s*\]")
_KUHN = re.compile(r"\[(check|bet|call|fold)\]", re.IGNORECASE)
_ACCEPT = re.compile(r"\[accept\]", re.IGNORECASE)
_DENY = re.compile(r"\[deny\]", re.IGNORECASE)
_OFFER_START = re.compile(r"\[offer:", re.IGNORECASE)
_BRACKET = re.compile(r"[\[\]]")
_LEADING = re.compile(r"^(i\s+(?:give|offer)\s+)", re.IGNORECASE)
_ARROW = re.compile(r"\s*->\s*")
_ITEM = re.compile(r"(?<!\d)(\d+)\s+([A-Za-z]+)", re.IGNORECASE)  # starts at a digit run
_NAMES = {"Wood": 0, "Woods": 0, "Gold": 1, "Golds": 1}


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 6 else HUGE


def tictactoe(text: str) -> tuple[int, str]:
    """The first bracketed number in `text`, e.g. 'I take [ 4 ]' -> 4."""
    match = _CELL.search(text)
    if match is None:
        return INVALID, "no move of the form [<cell number>] found"
    return _number(match.group(1)), ""


def kuhn(text: str) -> tuple[int, str]:
    """The first of [check] / [bet] / [call] / [fold] in `text`, any case."""
    match = _KUHN.search(text)
    if match is None:
        return INVALID, "no [check], [bet], [call] or [fold] found"
    return kuhn_poker.ACTION_NAMES.index(f"[{match.group(1).lower()}]"), ""


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


def negotiation_move(text: str) -> tuple[int, str]:
    """The structured action of a negotiation move (plain talk is `negotiation.TALK`)."""
    if _ACCEPT.search(text):
        response = negotiation.R_ACCEPT
    elif _DENY.search(text):
        response = negotiation.R_DENY
    else:
        response = negotiation.R_NONE
    found = find_offer(text)
    if found is None:
        return negotiation.encode(response), ""
    token, body = found
    parsed = offer(body.strip())
    if parsed is None:
        return INVALID, (
            f"malformed offer {token[:80]!r}: expected "
            "[Offer: <qty> <Wood|Gold>, ... -> <qty> <Wood|Gold>, ...] with positive quantities"
        )
    give, want = parsed
    return negotiation.encode(response, give, want), ""


READERS = {"tictactoe": tictactoe, "kuhn_poker": kuhn, "negotiation": negotiation_move}
