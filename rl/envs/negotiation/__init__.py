"""Simple Negotiation, in one place: rules and the action encoding (`rules`), prompt and reply
grammar (`text`), the heuristic negotiator (`opponent`) and the corpus player (`player`);
`GAME` is its registry entry.

    env = rl.envs.make("negotiation")
    action = rl.envs.negotiation.encode(R_NONE, give=(3, 0), want=(0, 2))

Moves are free text: SPIRAL's format check passes the boxed answer to the grammar unfiltered
(`free_form`). The names of the rules are importable from here.
"""

from rl.envs.negotiation import mirror, opponent, player, text
from rl.envs.negotiation.opponent import HeuristicNegotiator
from rl.envs.negotiation.rules import (
    ACCEPT,
    ACCEPTOR_LACKS,
    BAD_ID,
    DENY,
    E_CANCELLED,
    E_DENIED,
    E_INVALID,
    E_OFFER,
    E_TRADE,
    GAME_OVER,
    GIVER_LACKS,
    MALFORMED,
    MORE,
    OFFERS,
    OWN_OFFER,
    R_ACCEPT,
    R_DENY,
    R_NONE,
    RESOURCES,
    RESPONSE_NAMES,
    START,
    TALK,
    VALUES,
    Negotiation,
    Q,
    State,
    decode,
    decode_int,
    encode,
    gains,
    response_mask,
)
from rl.envs.registry import Game


def _optimal(env: Negotiation) -> HeuristicNegotiator:
    return HeuristicNegotiator()


GAME = Game(
    env=Negotiation,
    title="Simple Negotiation",
    describe=text.describe,
    read=text.read,
    example=text.EXAMPLE,
    free_form=True,
    aliases=("simple_negotiation",),
    optimal=_optimal,
    player=player.play,
    mirror=mirror.MIRROR,
)

__all__ = [
    "ACCEPT",
    "ACCEPTOR_LACKS",
    "BAD_ID",
    "DENY",
    "E_CANCELLED",
    "E_DENIED",
    "E_INVALID",
    "E_OFFER",
    "E_TRADE",
    "GAME",
    "GAME_OVER",
    "GIVER_LACKS",
    "MALFORMED",
    "MORE",
    "OFFERS",
    "OWN_OFFER",
    "RESOURCES",
    "RESPONSE_NAMES",
    "R_ACCEPT",
    "R_DENY",
    "R_NONE",
    "START",
    "TALK",
    "VALUES",
    "HeuristicNegotiator",
    "Negotiation",
    "Q",
    "State",
    "decode",
    "decode_int",
    "encode",
    "gains",
    "mirror",
    "opponent",
    "player",
    "response_mask",
    "text",
]
