r"""Prompt styles: how a game is worded to a model, and how its replies are checked.

    prompter = rl.styles.prompter("spiral", env, n)      # one per batch of n games
    prompter.start(states, range(n))                      # the games of `states` [n]
    prompts = prompter.render(states, rows)               # the movers' prompts of those rows
    parsed = prompter.parse(states, replies, mode="boxed", key=key)
    prompter.advance(actions, from_reply, stepped, moved_rows, fresh, restarted_rows)

Two named styles (`STYLES`):

- `"builtin"`: this project's wording of each game's rules and state (`rl.text.render`: the
  game's `describe` and an answer instruction with an example move), the reply checked by
  `rl.text.parse_batch`. The built-in model was trained on this wording.
- `"spiral"`: SPIRAL's prompts. The observation is TextArena's text, as SPIRAL's envs word it
  (TicTacToe: the rules and the latest board; Kuhn Poker and Simple Negotiation: every message
  so far, the players' words included), read from a TextArena env kept beside each game
  (`rl.envs.mirror`; needs `pip install textarena==0.7.4`), inside SPIRAL's instruction
  template (`SPIRAL_TEMPLATE`). A reply is checked as SPIRAL checks it (`spiral_action`): its
  last `\boxed{}` (the whole reply when there is none), a `\text{}` inside unwrapped, wrapped
  as `[...]` when it has no brackets and at most 5 words, spaces collapsed, must be one of the
  acceptable actions read from the observation: the legal moves in TicTacToe and Kuhn Poker,
  SPIRAL's list in Negotiation (`rl.envs.negotiation.mirror.actions`). The env then reads it
  with its grammar; the move goes to the TextArena env as that text (what SPIRAL's env gets).

The rollout's `convention` (the invalid-reply rewards) is independent of the style; `mode`
"env" skips the format check in both styles (the whole reply goes to the grammar).

Which style a run uses: `default_style(model_dir)`: "builtin" for `jaxlens.BUILTIN_MODEL`,
the style recorded beside a policy this project exported (`STYLE_FILE`, written by
`write_style`), and "spiral" for any other checkpoint.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxlens
from rl import envs, text
from rl.envs import mirror, prompt
from rl.envs.core import INVALID

STYLE_FILE = "prompt_style.json"  # beside an exported policy's weights
# SPIRAL's game prompt ("qwen3" template), around the observation (a paper setting)
SPIRAL_TEMPLATE = (
    "You are playing a two-player zero-sum game. Make valid actions to win.\n"
    "Observation: {observation}\n"
    "Please reason step by step, and put your final answer within \\boxed{{}}."
)
_MAX_WRAP_WORDS = 5
_DRAWS = 0x0FFE  # fold_in tag of the key of SPIRAL's random offers (Negotiation)
_TEXT = re.compile(r"^\\text\{(.*)\}$", re.DOTALL)


class StyleError(ValueError):
    """An unknown prompt style, or one that cannot word a game."""


def check_style(name: Any, what: str = "prompt_style") -> str:
    """`name` if it is a style, else `StyleError` naming `what` and the styles."""
    if name not in STYLES:
        raise StyleError(f"{what}={name!r} is unknown; expected one of {STYLES}")
    return name


def check_games(name: str, envs: Sequence[Any]) -> None:
    """Raises when style `name` cannot word one of `envs` (spiral: TextArena missing, a game
    without a mirror, an option TextArena cannot word)."""
    check_style(name)
    if name == "spiral":
        for env in envs:
            mirror.spec(env)
        mirror.textarena()


def env_options(name: str, game: str) -> dict[str, Any]:
    """The env options a game is played with in style `name` when none are given: SPIRAL's
    version of the game in the "spiral" style (`rl.envs.Mirror.options`), else its defaults."""
    spec = envs.get(game).mirror
    return dict(spec.options) if check_style(name) == "spiral" and spec is not None else {}


def worded_options(
    name: str, games: Sequence[str], options: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """`options` (`{game: {option: value}}`) with every game that style `name` cannot word as
    given switched to the style's version of it (`env_options`: Kuhn Poker's "standard" variant
    to SPIRAL's "spiral_v1" in the "spiral" style)."""
    out = {g: dict(o) for g, o in options.items()}
    for game in games if check_style(name) == "spiral" else ():
        try:
            mirror.spec(envs.make(game, **out.get(game, {})))
        except mirror.MirrorError:
            out[game] = {**out.get(game, {}), **env_options(name, game)}
    return out


def default_style(model_dir: str | Path) -> str:
    """The style a checkpoint is prompted in (module docstring)."""
    path = Path(model_dir)
    recorded = path / STYLE_FILE
    if recorded.is_file():
        return check_style(json.loads(recorded.read_text())["prompt_style"], str(recorded))
    if path.resolve() == Path(jaxlens.BUILTIN_MODEL).resolve():
        return "builtin"
    return "spiral"


def write_style(model_dir: str | Path, name: str) -> Path:
    """Record in `model_dir` the style its policy was trained in (read by `default_style`)."""
    out = Path(model_dir) / STYLE_FILE
    out.write_text(json.dumps({"prompt_style": check_style(name)}) + "\n")
    return out


def spiral_action(reply: str) -> str:
    """A reply's action as SPIRAL's format check writes it (module docstring)."""
    content = text.last_boxed(reply)
    if content is None:
        content = reply
    else:
        inner = _TEXT.match(content)
        content = inner.group(1) if inner else content
    content = content.strip()
    if "[" not in content and "]" not in content and len(content.split()) <= _MAX_WRAP_WORDS:
        content = f"[{content}]"
    return " ".join(content.split())


def _legal(env: Any, mask: Sequence[bool]) -> list[str]:
    return [env.action_names[a] for a, ok in enumerate(mask) if ok]


class Prompter:
    """The "builtin" style over a batch of `n` games of `env` (stateless: the state is all)."""

    def __init__(self, env: Any, n: int):
        self.env, self.n = env, n

    def start(self, states: Any, rows: Sequence[int]) -> None:
        """The games in `rows` of `states` begin (or are rebuilt from their states)."""

    def render(self, states: Any, rows: Sequence[int]) -> list[str]:
        """The prompts of the players to move in `rows`."""
        rendered = text.render_batch(self.env, states)
        return [rendered[j] for j in rows]

    def parse(self, states: Any, replies: Sequence[str], *, mode: str, key: Any = None):
        """`rl.text.Parsed` of one reply per game (`mode` as `rl.text.parse_batch`)."""
        return text.parse_batch(self.env, states, replies, mode=mode)

    def advance(self, actions, from_reply, stepped, moved, fresh, restarted) -> None:
        """After a step: the games in `moved` went on to `stepped` by `actions` (`from_reply`:
        the move was a parsed reply), those in `restarted` began afresh at `fresh`."""


class SpiralPrompter(Prompter):
    """The "spiral" style: TextArena's text from a mirror per game, SPIRAL's check."""

    def __init__(self, env: Any, n: int):
        super().__init__(env, n)
        self.mirrors = mirror.Mirrors(env, n)
        self.shown: dict[int, str] = {}  # row -> the observation rendered this turn
        self.said: dict[int, str] = {}  # row -> the checked action text of its reply

    def start(self, states: Any, rows: Sequence[int]) -> None:
        rows = list(rows)
        if rows:
            games = prompt.rows(states)
            for j in rows:
                self.mirrors.start(j, games[j])

    def observation(self, j: int, player: int) -> str:
        """TextArena's observation text of `player` in game `j` (no template)."""
        return self.mirrors.observe(j, player)

    def render(self, states: Any, rows: Sequence[int]) -> list[str]:
        movers = np.asarray(jax.device_get(states.current_player))
        out = []
        for j in rows:
            self.shown[j] = self.observation(j, int(movers[j]))
            out.append(SPIRAL_TEMPLATE.format(observation=self.shown[j]))
        return out

    def parse(self, states: Any, replies: Sequence[str], *, mode: str, key: Any = None):
        if mode == "env":
            self.said = {j: r for j, r in enumerate(replies)}
            return text.parse_batch(self.env, states, replies, mode="env")
        if mode not in text.MODES:
            raise StyleError(f"mode={mode!r} is unknown; expected one of {text.MODES}")
        masks = np.asarray(jax.device_get(states.legal_action_mask)).tolist()
        seed = (
            0
            if key is None
            else int(jax.random.randint(jax.random.fold_in(key, _DRAWS), (), 0, 2**31 - 1))
        )
        rng = random.Random(seed)
        said, ok, why = [], [], []
        for j, reply in enumerate(replies):
            action = spiral_action(reply) if isinstance(reply, str) else ""
            allowed = (self.mirrors.actions(self.shown[j], _legal(self.env, masks[j]), rng)
                       if j in self.shown else [])  # fmt: skip
            said.append(action)
            ok.append(action in allowed)
            why.append("" if ok[-1] else f"{action[:40]!r} is not one of SPIRAL's actions here")
        parsed = text.parse_batch(
            self.env, states, [a if k else "" for a, k in zip(said, ok, strict=True)], mode="env"
        )
        good = np.array(ok)
        reasons = [r if k else w for r, k, w in zip(parsed.reasons, ok, why, strict=True)]
        self.said = dict(enumerate(said))
        return text.Parsed(np.where(good, parsed.actions, INVALID).astype(np.int32), reasons, good)

    def advance(self, actions, from_reply, stepped, moved, fresh, restarted) -> None:
        moved, restarted = list(moved), list(restarted)
        if moved:
            after = prompt.rows(stepped)
            for j in moved:
                said = self.said[j] if from_reply[j] else self.mirrors.move_text(actions[j])
                self.mirrors.advance(j, said, after[j])
        self.start(fresh, restarted)
        self.shown, self.said = {}, {}


_PROMPTERS = {"builtin": Prompter, "spiral": SpiralPrompter}
STYLES: tuple[str, ...] = tuple(_PROMPTERS)  # the registered styles, by name


def prompter(name: str, env: Any, n: int) -> Prompter:
    """A `Prompter` of style `name` for `n` games of `env`."""
    check_style(name)
    return _PROMPTERS[name](env, n)
