"""Simple Negotiation's TextArena env beside ours (`rl.envs.mirror`), and SPIRAL's action list.

SPIRAL plays its own Simple Negotiation (Wood and Gold, both players holding 10 of each, values
5 / 15 and 15 / 5, 10 moves) through TextArena's full-history wrapper, so a player sees every
message said so far, the opponent's included. TextArena 0.7.4 ships a five-resource game with
random holdings: its env is reset here to SPIRAL's start and its opening prompts are worded
again from that start. Where 0.7.4's rules differ from SPIRAL's (ours), its state is aligned
with ours after every move (`sync`): a denied offer is no longer pending (0.7.4 keeps it), and
holdings are ours.

`actions` is SPIRAL's check of a Negotiation reply: the boxed answer must be one of a list
read from the observation text (SPIRAL's `simple_negotiation_parse_available_actions`):

- when the last offer in the text was made to the player and no later message says it was
  accepted or denied: `[Accept]`, `[Deny]` and two sentences ending in them (`RESPONSES`);
- three offers drawn at random, each one resource for the other (never the same resource on
  both sides), giving 1 to min(3, held) and asking 1 to 3, the holdings read from the text's
  `[Resource] Qty: n` lines (the opening prompt's, so the starting ones);
- three fixed sentences of talk (`TALK`).

Duplicates are dropped. So an offer passes only when it is one of the three drawn at that turn;
of the talk, only replies whose boxed text is one of the two longer sentences can pass (the
short one is wrapped in brackets by the format rule first). Both as in SPIRAL.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from rl.envs.negotiation.rules import RESOURCES, RESPONSE_NAMES, START, VALUES, decode_int
from rl.envs.prompt import Row
from rl.envs.registry import Mirror

# SPIRAL's settings of the action list (see the module docstring).
RESPONSES = (
    "[Accept]",
    "[Deny]",
    "That sounds good to me. [Accept]",
    "I'll pass on this offer. [Deny]",
)
TALK = (
    "Let me think about what would be a fair trade.",
    "What are you looking to trade?",
    "I'm open to negotiation.",
)
OFFERS_DRAWN, MAX_GIVE, MAX_ASK = 3, 3, 3
_NO_PLAYER = "I'll think about my strategy."  # SPIRAL's list when the text names no player
_PLAYER = re.compile(r"You are Player (\d+)")
_HELD = re.compile(r"\[(\w+)\]\s+Qty:\s+(\d+)")
_OFFER_TO = re.compile(r"Player (\d+) made the following offer to Player (\d+):")
_SETTLED = re.compile(r"accepted|denied|implicitly denied")


def _side(q: Sequence[int]) -> str:
    return ", ".join(f"{int(n)} {RESOURCES[r]}" for r, n in enumerate(q) if n > 0)


def move_text(env: Any, action: int) -> str:
    """An action id as a reply TextArena reads the same way: `[Accept]`, `[Deny]` and / or
    `[Offer: 3 Wood -> 2 Gold]`; plain talk is the empty reply."""
    response, give, want = decode_int(action)
    parts = [RESPONSE_NAMES[response]] if response else []
    if any(give) or any(want):
        parts.append(f"[Offer: {_side(give)} -> {_side(want)}]")
    return " ".join(parts)


def _holdings(inventory: Any) -> dict[int, dict[str, int]]:
    return {p: {name: int(inventory[p][r]) for r, name in enumerate(RESOURCES)} for p in (0, 1)}


def make(ta: Any, env: Any, row: Row) -> Any:
    """A fresh TextArena Simple Negotiation at SPIRAL's start, its prompts worded from it."""
    from textarena.envs.SimpleNegotiation.env import SimpleNegotiationEnv

    from rl.envs.mirror import wrap

    game = SimpleNegotiationEnv(max_turns=env.moves)
    game.reset(num_players=2)
    game.resource_names = list(RESOURCES)
    state = game.state
    state.error_allowance = 0
    gs = state.game_state
    gs["player_resources"] = _holdings(START)
    gs["player_values"] = _holdings(VALUES)
    start = [int(START[p] @ VALUES[p]) for p in (0, 1)]
    gs["inventory_value"] = {
        p: {"initial": v, "current": v, "change": 0} for p, v in enumerate(start)
    }
    state.observations = {p: [] for p in (0, 1)}  # the prompts of the random start, worded again
    for p in (0, 1):
        prompt = game._prompt(player_id=p, game_state=gs)
        state.add_observation(to_id=p, message=prompt, observation_type=ta.ObservationType.PROMPT)
    return wrap(game, history=True)


def moves(env: Any, row: Row) -> list[str]:
    """The moves of `row`'s game as canonical replies (`move_text`) of its action history."""
    return [move_text(env, a) for a in row.history[: min(row.move_count, env.moves)]]


def _offer(row: Row) -> dict[str, Any] | None:
    """Our pending offer in TextArena's form."""
    if row.offer_from < 0:
        return None
    amounts = [{n: int(q[r]) for r, n in enumerate(RESOURCES) if q[r] > 0}
               for q in (row.offer_give, row.offer_want)]  # fmt: skip
    return {"from_player": row.offer_from, "to_player": 1 - row.offer_from,
            "offered_resources": amounts[0], "requested_resources": amounts[1]}  # fmt: skip


def sync(wrapped: Any, env: Any, row: Row) -> None:
    """TextArena's holdings and pending offer set to ours (its rules differ: module docstring)."""
    game = wrapped.env
    gs = game.state.game_state
    gs["player_resources"] = _holdings(row.inventory)
    ours, theirs = _offer(row), gs["current_offer"]
    same = (
        theirs is not None
        and ours is not None
        and all(
            theirs[k] == ours[k]
            for k in ("from_player", "offered_resources", "requested_resources")
        )
    )
    if not same:
        gs["current_offer"] = ours
    game._update_inventory_values()


def actions(observation: str, legal: Sequence[str], rng: random.Random) -> list[str]:
    """SPIRAL's acceptable replies at `observation` (module docstring); `legal` is unused: a
    Negotiation move is free text."""
    me = _PLAYER.search(observation)
    if me is None:
        return [_NO_PLAYER]
    held = {name: int(n) for name, n in _HELD.findall(observation)}
    out: list[str] = []
    offers = list(_OFFER_TO.finditer(observation))
    if offers and int(offers[-1].group(2)) == int(me.group(1)):
        if not _SETTLED.search(observation, offers[-1].end()):
            out += RESPONSES
    if len(held) >= 2:
        names = list(held)
        for _ in range(OFFERS_DRAWN):
            give = rng.choice(names)
            want = rng.choice([n for n in names if n != give])
            top = min(MAX_GIVE, held[give])
            if top > 0:
                out.append(
                    f"[Offer: {rng.randint(1, top)} {give} -> {rng.randint(1, MAX_ASK)} {want}]"
                )
    out += TALK
    return list(dict.fromkeys(out))


MIRROR = Mirror(make=make, moves=moves, move_text=move_text, sync=sync, actions=actions)
