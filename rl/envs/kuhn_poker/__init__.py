"""Kuhn Poker, in one place: rules and variants (`rules`), prompt and reply grammar (`text`),
the table players (`opponent`: Nash, best response to random), their exact arithmetic
(`exact`), the strategy readout (`strategy`) and the corpus player (`player`); `GAME` is its
registry entry.

    env = rl.envs.make("kuhn_poker", variant="spiral_v1")

The names of the rules (`KuhnPoker`, `State`, `CHECK`, `BET`, nodes `START`, `C`, `B`, `CB`,
...) and the table players and calculators are importable from here.
"""

from rl.envs.kuhn_poker import exact, mirror, opponent, player, strategy, text
from rl.envs.kuhn_poker.exact import (
    kuhn_best_response,
    kuhn_chips_per_round,
    kuhn_exploitability,
    kuhn_match_outcome,
    kuhn_random_table,
    kuhn_round_outcomes,
    kuhn_round_value,
)
from rl.envs.kuhn_poker.opponent import KuhnBestResponse, KuhnNash
from rl.envs.kuhn_poker.rules import (
    ACTION_NAMES,
    BC,
    BET,
    BF,
    CALL,
    CARD_NAMES,
    CB,
    CBC,
    CBF,
    CC,
    CHECK,
    DEALS,
    EXTRA,
    FOLD,
    GAME_OVER,
    LEGAL,
    NEXT,
    NODE_NAMES,
    NOT_NOW,
    SHOWDOWN,
    START,
    TERMINAL,
    UNKNOWN_ACTION,
    VARIANTS,
    B,
    C,
    KuhnPoker,
    State,
    opener,
    round_result,
)
from rl.envs.registry import Game


def _optimal(env: KuhnPoker) -> KuhnNash:
    return KuhnNash()


GAME = Game(
    env=KuhnPoker,
    title="Kuhn Poker",
    describe=text.describe,
    read=text.read,
    example=text.EXAMPLE,
    aliases=("kuhn",),
    optimal=_optimal,
    player=player.play,
    mirror=mirror.MIRROR,
    corpus_options={"variant": "standard"},
    strategy=strategy.STRATEGY,
)

__all__ = [
    "ACTION_NAMES",
    "BC",
    "BET",
    "BF",
    "CALL",
    "CARD_NAMES",
    "CB",
    "CBC",
    "CBF",
    "CC",
    "CHECK",
    "DEALS",
    "EXTRA",
    "FOLD",
    "GAME",
    "GAME_OVER",
    "LEGAL",
    "NEXT",
    "NODE_NAMES",
    "NOT_NOW",
    "SHOWDOWN",
    "START",
    "TERMINAL",
    "UNKNOWN_ACTION",
    "VARIANTS",
    "B",
    "C",
    "KuhnBestResponse",
    "KuhnNash",
    "KuhnPoker",
    "State",
    "exact",
    "kuhn_best_response",
    "kuhn_chips_per_round",
    "kuhn_exploitability",
    "kuhn_match_outcome",
    "kuhn_random_table",
    "kuhn_round_outcomes",
    "kuhn_round_value",
    "opener",
    "mirror",
    "opponent",
    "player",
    "round_result",
    "strategy",
    "text",
]
