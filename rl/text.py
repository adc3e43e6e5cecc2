"""The text interface of the games: observation prompts in, model replies out.

    prompt = rl.text.render(env, state, player)          # rules + position + legal moves
    action, reason = rl.text.parse(env, state, reply)    # INVALID and a reason if no legal move

Batched: `render_batch(env, states)` and `parse_batch(env, states, replies)` take `[B]` states
(one `jax.device_get` per call, then plain Python per reply); `step_replies` parses and
applies a batch of replies in one jitted step.

Two ways to read a reply (`mode`):

- `"boxed"` (default; SPIRAL's training-time format check in front of the env): the action is
  the content of the reply's *last* `\\boxed{...}` (braces balanced, surrounding spaces
  stripped); content without square brackets and of at most 5 words is wrapped as
  `[content]`. The result must then equal one of the currently legal moves as written in the
  prompt (`[4]`, `[check]`; case-sensitive: the game's `env.action_names`), else the reply
  fails the format check. In a game whose moves are free text (`Game.free_form`: Negotiation)
  the extracted text goes to the game's grammar unfiltered (as SPIRAL's later code does); only
  a missing `\\boxed{}` fails the check.
- `"env"`: the game's own grammar (`Game.read`, TextArena's) over the whole reply.

This is the "builtin" prompt style; `rl.styles` holds the styles, SPIRAL's ("spiral": its
template around TextArena's observation text, its action lists) beside this one.

Every game-specific piece (the prompt's wording, the example move of the answer instruction,
the grammar, free-form or not) comes from the game's registry entry (`rl.envs.game_of`).

Invalid-move conventions (rewards of offender, other), chosen in `step_replies`:

- `"env"`: everything that is not a legal move is the env's invalid move, -1 / 0.
- `"spiral"`: a failed format check costs -1.5 / +0.5 (SPIRAL's training); a move that passes
  it but breaks the rules (free-form games only: Negotiation) is the env's -1 / 0.
- `"eval"`: as "spiral" with -1 / +1 for a failed format check (evaluation games).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rl.envs import core, registry
from rl.envs.batch import step_or_forfeit
from rl.envs.core import INVALID, PENALTIES
from rl.envs.prompt import Row, rows

MODES = ("boxed", "env")
INSTRUCTION = (
    "Think it through step by step, then give your move as the final answer in \\boxed{{}}, "
    "for example \\boxed{{{example}}}."
)
_BOXED = "\\boxed{"
_BRACES = re.compile(r"\\boxed\{|[{}]")
_MAX_WRAP_WORDS = 5


class TextError(ValueError):
    """Bad input to the text layer (unknown env, mode, player or mismatched batch)."""


class Parsed(NamedTuple):
    """A batch of parsed replies."""

    actions: np.ndarray  # int32 [B]: the action id, or INVALID
    reasons: list[str]  # [B]: "" for a legal move, else why there is none
    format_ok: np.ndarray  # bool [B]: False where the reply failed the boxed format check


def _game(env: Any) -> registry.Game:
    try:
        return registry.game_of(env)
    except core.EnvError as err:
        raise TextError(str(err)) from None


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise TextError(f"mode={mode!r} is unknown; expected one of {MODES}")


def _as_batch(state: Any, what: str) -> Any:
    """A single state as a batch of one (rejecting a batch)."""
    if np.ndim(state.terminated) != 0:
        raise TextError(f"{what} expects one state; use {what}_batch for a batch")
    return jax.tree.map(lambda x: np.asarray(x)[None], jax.device_get(state))


def _batch_size(states: Any) -> int:
    shape = np.shape(states.terminated)
    if len(shape) != 1:
        raise TextError(f"expected a batch of states ([B]); terminated has shape {shape}")
    return shape[0]


def _observe(
    game: registry.Game, env: Any, row: Row, player: Any, messages: Sequence[str] | None
) -> str:
    if player not in (0, 1):
        raise TextError(f"player={player!r}: expected 0 or 1")
    return game.describe(env, row, int(player), messages)


def observation(env: Any, state: Any, player: int, *, messages: Sequence[str] | None = None) -> str:
    """The observing player's view: rules, position, legal moves (no answer instruction)."""
    game = _game(env)
    (row,) = rows(_as_batch(state, "render"))
    return _observe(game, env, row, player, messages)


@functools.cache
def _instruction(example: str) -> str:
    return "\n\n" + INSTRUCTION.format(example=example)


def _prompt(game: registry.Game, observation_text: str) -> str:
    return observation_text + _instruction(game.example)


def render(env: Any, state: Any, player: int, *, messages: Sequence[str] | None = None) -> str:
    """The prompt for `player`: its observation plus the instruction to answer in \\boxed{}.

    `messages`: the players' replies so far, one per move, quoted in the move list by a game
    that shows them (Negotiation); the others ignore them.
    """
    return _prompt(_game(env), observation(env, state, player, messages=messages))


def render_batch(env: Any, states: Any, players: Sequence[int] | None = None) -> list[str]:
    """`render` for each game of a `[B]` batch; `players` defaults to whoever is to move."""
    game = _game(env)
    n = _batch_size(states)
    games = rows(states)
    players = [g.current_player for g in games] if players is None else list(players)
    if len(players) != n:
        raise TextError(f"render_batch: {len(players)} players for {n} states")
    return [
        _prompt(game, _observe(game, env, g, p, None)) for g, p in zip(games, players, strict=True)
    ]


def last_boxed(reply: str) -> str | None:
    """The content of the last closed `\\boxed{...}` in `reply` (braces balanced), or None.

    "Last" is by opening position (so a nested box wins over the box around it). One pass over
    the braces with a stack: linear time whatever the reply.
    """
    start = reply.rfind(_BOXED)
    if start < 0:
        return None
    body = start + len(_BOXED)
    close = reply.find("}", body)
    if close >= 0 and reply.find("{", body, close) < 0:
        return reply[body:close]  # common case: the last box holds no braces
    stack: list[tuple[bool, int]] = []  # (opened by \\boxed{, content start)
    best: tuple[int, int] | None = None
    for match in _BRACES.finditer(reply):
        if match.group() == "}":
            if stack:
                boxed, start = stack.pop()
                if boxed and (best is None or start > best[0]):
                    best = (start, match.start())
        else:
            stack.append((match.group() != "{", match.end()))
    return None if best is None else reply[best[0] : best[1]]


def boxed_action_text(reply: str) -> str | None:
    """SPIRAL's extraction: last boxed content, wrapped as `[content]` when it is short."""
    content = last_boxed(reply)
    if content is None:
        return None
    content = content.strip()
    if not re.search(r"[\[\]]", content) and len(content.split()) <= _MAX_WRAP_WORDS:
        content = f"[{content}]"
    return content


@functools.cache
def _checker(env: Any):
    return jax.jit(jax.vmap(env.check))


@functools.lru_cache(maxsize=4096)
def _legal_names(names: tuple[str, ...], mask: tuple[bool, ...]) -> tuple[str, ...]:
    return tuple(names[a] for a, ok in enumerate(mask) if ok)


def _read(
    game: registry.Game, env: Any, legal_mask: Sequence[bool], reply: str, mode: str
) -> tuple[int, str, bool]:
    """(action or INVALID, reason, format_ok) of one reply before the rules check."""
    if not isinstance(reply, str):
        return INVALID, f"reply is {type(reply).__name__}, not str", mode == "env"
    if mode == "env":
        action, reason = game.read(reply)
        return action, reason, True
    text = boxed_action_text(reply)
    if text is None:
        return INVALID, "no \\boxed{...} answer found", False
    if game.free_form:
        action, reason = game.read(text)
        return action, reason, True
    legal = _legal_names(env.action_names, tuple(legal_mask))
    if text in legal:
        return env.action_names.index(text), "", True
    if not legal:
        return INVALID, "the game is over", False
    return INVALID, f"{text[:40]!r} is not one of the legal moves {', '.join(legal)}", False


def parse_batch(env: Any, states: Any, replies: Sequence[str], *, mode: str = "boxed") -> Parsed:
    """Parse one reply per game of a `[B]` batch; never raises on the reply text."""
    game = _game(env)
    _check_mode(mode)
    n = _batch_size(states)
    if isinstance(replies, str) or len(replies) != n:
        raise TextError(f"parse_batch: expected {n} replies (a list of str), got {replies!r:.80}")
    masks = np.asarray(jax.device_get(states.legal_action_mask)).tolist()
    read = [_read(game, env, masks[i], replies[i], mode) for i in range(n)]
    actions = np.array([a for a, _, _ in read], np.int64)
    reasons = [r for _, r, _ in read]
    format_ok = np.array([ok for _, _, ok in read], bool)
    probe = np.clip(actions, -1, np.iinfo(np.int32).max).astype(np.int32)
    codes = np.asarray(_checker(env)(states, jnp.asarray(probe)))
    for i in np.flatnonzero((actions != INVALID) & (codes != core.OK)):
        reasons[i] = env.REASONS[codes[i]]
        actions[i] = INVALID
    return Parsed(actions.astype(np.int32), reasons, format_ok)


def parse(env: Any, state: Any, reply: str, *, mode: str = "boxed") -> tuple[int, str]:
    """(action, reason) of one reply: `INVALID` and why when it holds no legal move."""
    batch = _as_batch(state, "parse")
    parsed = parse_batch(env, batch, [reply], mode=mode)
    return int(parsed.actions[0]), parsed.reasons[0]


_apply = jax.jit(step_or_forfeit, static_argnums=(0, 4))


def step_replies(
    env: Any, states: Any, replies: Sequence[str], *, convention: str = "spiral"
) -> tuple[Any, Parsed]:
    """Parse a batch of replies and play them; returns (next states, parsed).

    `convention` is "env" (env grammar, -1 / 0), "spiral" (format check, -1.5 / +0.5) or
    "eval" (format check, -1 / +1); see the module docstring.
    """
    if convention not in PENALTIES:
        raise TextError(
            f"convention={convention!r} is unknown; expected one of {sorted(PENALTIES)}"
        )
    mode = "env" if convention == "env" else "boxed"
    parsed = parse_batch(env, states, replies, mode=mode)
    new = _apply(env, states, jnp.asarray(parsed.actions), jnp.asarray(parsed.format_ok),
                 PENALTIES[convention])  # fmt: skip
    return new, parsed
