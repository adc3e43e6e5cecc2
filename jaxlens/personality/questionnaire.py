"""Steering read out on the questionnaire: the expected keyed Likert answer of each trait.

A model may follow a persona in its questionnaire answers while ignoring it in the forced
choice (the built-in model does), so the steer stage reads steering out on the IPIP-50 items
too, asked exactly as in scoring (`formats.item_messages`):

- **Prompts**: each item of a set (`ItemSplit`), without a persona (the item alone) and with
  each context character's card as the system prompt (the paper's "additional context").
- **Readout** per prompt: the expected Likert value from the option probabilities of "1".."5"
  as the first reply token (`scoring.readouts`), keyed (`6 - x` for reverse-keyed items), so
  higher always means more of the item's trait. Per (steered trait, strength, read trait,
  context): the mean over the read trait's items (1..5). On target: read == steered; the other
  four are off target.
- **Item split** (`item_split`): each trait's 10 items are permuted with a seed and cut into
  `choose` items, the only ones any setting (the steered probe position, layers and strength
  scale, `choose_steering`) is chosen on, and `measure` items, the ones the reported shifts
  are measured on. The split is written to the steer stage's `config.json`.

Records have the keys of `steering.sweep`'s (`steered`, `strength`, `read`, `context`) and the
value under `keyed`, so `steering.dose_response(..., readout="keyed")` and
`steering.shift_matrix` read them as they read forced choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import Float

import jaxlens
import jaxlens.personality.formats as formats
import jaxlens.personality.runtime as runtime
import jaxlens.personality.scoring as scoring
import jaxlens.personality.steering as steering
from jaxlens.personality.items import IPIP50, TRAITS
from jaxlens.personality.personas import Character

READOUT = "keyed"


class ItemSplit(NamedTuple):
    """IPIP-50 item indices per trait: `choose` (settings are chosen on these) and `measure`
    (reported shifts are measured on these); disjoint, together the trait's 10 items."""

    choose: dict[str, tuple[int, ...]]
    measure: dict[str, tuple[int, ...]]
    seed: int

    def items(self, part: str) -> list[int]:
        """Every trait's items of one part (`"choose"` or `"measure"`), in IPIP-50 order."""
        if part not in ("choose", "measure"):
            raise ValueError(f"ItemSplit part={part!r}: expected 'choose' or 'measure'")
        return sorted(i for t in TRAITS for i in getattr(self, part)[t])


def item_split(choose: int = 5, seed: int = 0) -> ItemSplit:
    """Each trait's 10 items, permuted with `seed` (one generator for all traits, in `TRAITS`
    order): the first `choose` to choose settings on, the rest to measure on."""
    if not 1 <= choose <= 9:
        raise ValueError(f"item_split: choose={choose}, expected 1..9 (both parts non-empty)")
    rng = np.random.default_rng(seed)
    picked, measured = {}, {}
    for t in TRAITS:
        idx = np.array([i for i, it in enumerate(IPIP50) if it.trait == t])
        perm = idx[rng.permutation(len(idx))]
        picked[t] = tuple(sorted(int(i) for i in perm[:choose]))
        measured[t] = tuple(sorted(int(i) for i in perm[choose:]))
    return ItemSplit(picked, measured, seed)


def prompts(items: Sequence[int], context: Sequence[Character]):
    """Conversations for `items` (IPIP-50 indices), each without a persona and then with each
    context card; and per conversation its item index and whether it has a card."""
    systems = [None] + [
        formats.card_system(c.character, c.franchise, c.description) for c in context
    ]
    convs, item_of, with_context = [], [], []
    for i in items:
        for s in systems:
            convs.append(formats.item_messages(s, IPIP50[i]))
            item_of.append(i)
            with_context.append(s is not None)
    return convs, np.array(item_of, np.int64), np.array(with_context)


def keyed_answers(
    model: jaxlens.LoadedModel,
    convs: list[list[dict]],
    item_of: Sequence[int],
    steer: jaxlens.Interventions | None = None,
    *,
    batch_size: int = 64,
) -> Float[np.ndarray, " prompts"]:
    """The expected keyed Likert answer (1..5) of each conversation under `steer`."""
    ids = [runtime.token_id(model.tokenizer, o) for o in scoring.OPTIONS]
    ev = np.zeros(len(convs))
    for batch in runtime.batches(model.tokenizer, convs, batch_size=min(batch_size, len(convs))):
        logp = runtime.next_token_logprobs(model, batch, ids, steer)  # [b, 5]
        ev[batch.rows] = scoring.readouts(logp)["ev"]
    keyed = np.array([IPIP50[i].keyed for i in item_of])
    return np.where(keyed > 0, ev, 6.0 - ev)


def readout_records(values, item_of, with_context, *, steered: str, strength: float) -> list:
    """Records (one per read trait and context) of the per-prompt keyed answers `values`."""
    traits = np.array([IPIP50[i].trait for i in item_of])
    out = []
    for read in TRAITS:
        for flag in (False, True):
            sel = (traits == read) & (with_context == flag)
            if sel.any():
                out.append(
                    {"steered": steered, "strength": float(strength), "read": read,
                     "context": flag, READOUT: float(values[sel].mean())}
                )  # fmt: skip
    return out


def sweep(
    model, probes_by_trait, recipe, *, items, context=(), layers=None, scales=None, norms=None,
    progress=None,
) -> list[dict]:  # fmt: skip
    """Keyed questionnaire readouts for every (steered trait, strength, read trait, context).

    `items`: IPIP-50 indices asked; `layers`: the centre layer per trait (default each probe's
    best layer); `scales`: a factor on the recipe's strengths per trait (default 1); `norms`:
    mean residual norms per layer (`steering.interventions`).
    """
    convs, item_of, ctx = prompts(items, context)
    base = keyed_answers(model, convs, item_of)
    records = []
    for t in TRAITS:
        records += readout_records(base, item_of, ctx, steered=t, strength=0.0)
    jobs = [
        (t, c)
        for t in TRAITS
        for c in steering.strengths(recipe, (scales or {}).get(t, 1.0))
        if c != 0
    ]
    if progress:
        jobs = progress(jobs, desc=f"questionnaire {recipe.name}", unit="setting")
    for t, c in jobs:
        probe = probes_by_trait[t]
        centre = probe.best_layer if layers is None else layers[t]
        steer = steering.interventions(
            recipe, probe.directions.astype(np.float32), centre, c, norms=norms
        )
        values = keyed_answers(model, convs, item_of, steer)
        records += readout_records(values, item_of, ctx, steered=t, strength=c)
    return records


class Choice(NamedTuple):
    """How one trait is steered, chosen on the choose items: the probe position whose directions
    are used, the band's centre layer, the scale of the recipe's strengths, and its score."""

    position: str
    layer: int
    scale: float
    score: float


def choose_steering(
    model, by_position, recipe, *, items, scales=(1.0, 0.5), penalty=2.0, progress=None
) -> tuple[dict[str, Choice], dict[str, dict[str, list[list[float]]]]]:
    """Per trait, the probe position, band centre and strength scale that steer its answers
    most specifically, judged on `items` (the split's choose items, no persona).

    `by_position`: `{position: {trait: Probe}}` (every probe position the probe stage fitted:
    a direction that reads a trait best is not always the one that moves the answers). Each
    candidate is scored at +- `scale` x the recipe's largest |strength|: the on-target shift
    less `penalty` x the mean |off-target| shift (2, the bar a clean result must pass).
    Returns the choice per trait and every candidate's score, `[position][trait][layer][scale]`.
    """
    c = max(abs(s) for s in recipe.strengths)
    convs, item_of, _ = prompts(items, [])
    traits = np.array([IPIP50[i].trait for i in item_of])
    layers = range(model.config.n_layers)
    jobs = [(pos, t, layer) for pos in by_position for t in TRAITS for layer in layers]
    scores = {pos: {t: [] for t in TRAITS} for pos in by_position}
    for pos, t, layer in (
        progress(jobs, desc="choose steering", unit="setting") if progress else jobs
    ):
        d = by_position[pos][t].directions.astype(np.float32)
        row = []
        for scale in scales:
            up, down = (
                keyed_answers(model, convs, item_of, steering.interventions(recipe, d, layer, s))
                for s in (scale * c, -scale * c)
            )
            shift = {r: float((up - down)[traits == r].mean()) for r in TRAITS}
            off = np.mean([abs(v) for r, v in shift.items() if r != t])
            row.append(shift[t] - penalty * float(off))
        scores[pos][t].append(row)
    choices = {}
    for t in TRAITS:
        candidates = [
            (v, pos, layer, scale)
            for pos in by_position
            for layer, row in enumerate(scores[pos][t])
            for scale, v in zip(scales, row, strict=True)
        ]
        v, pos, layer, scale = max(candidates, key=lambda x: x[0])
        choices[t] = Choice(pos, layer, float(scale), float(v))
    return choices, scores
