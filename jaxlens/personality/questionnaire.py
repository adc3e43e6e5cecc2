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
  `choose` items, the only ones any setting (the steered layers, `choose_layers`) is chosen
  on, and `measure` items, the ones the reported shifts are measured on. The split is written
  to the steer stage's `config.json`.

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
    model, probes_by_trait, recipe, *, items, context=(), layers=None, norms=None, progress=None
) -> list[dict]:
    """Keyed questionnaire readouts for every (steered trait, strength, read trait, context).

    `items`: IPIP-50 indices asked; `layers`: the centre layer per trait (default each probe's
    best layer); `norms`: mean residual norms per layer (`steering.interventions`).
    """
    convs, item_of, ctx = prompts(items, context)
    base = keyed_answers(model, convs, item_of)
    records = []
    for t in TRAITS:
        records += readout_records(base, item_of, ctx, steered=t, strength=0.0)
    jobs = [(t, c) for t in TRAITS for c in recipe.strengths if c != 0]
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


def choose_layers(
    model, probes_by_trait, recipe, *, items, candidates=None, progress=None
) -> tuple[dict[str, int], dict[str, list[float]]]:
    """The band's centre layer per trait, chosen on `items` (the split's choose items, no
    persona): at +- the recipe's largest |strength|, the layer whose band gives the largest
    on-target shift less the mean |off-target| shift. Returns the layers and every
    candidate's score per trait (`candidates`: default every layer)."""
    n_layers = model.config.n_layers
    candidates = list(range(n_layers)) if candidates is None else list(candidates)
    c = max(abs(s) for s in recipe.strengths)
    convs, item_of, ctx = prompts(items, [])
    traits = np.array([IPIP50[i].trait for i in item_of])
    jobs = [(t, layer) for t in TRAITS for layer in candidates]
    scores: dict[str, list[float]] = {t: [] for t in TRAITS}
    for t, layer in progress(jobs, desc="choose layers", unit="setting") if progress else jobs:
        d = probes_by_trait[t].directions.astype(np.float32)
        up, down = (
            keyed_answers(model, convs, item_of, steering.interventions(recipe, d, layer, s))
            for s in (c, -c)
        )
        shift = {r: float((up - down)[traits == r].mean()) for r in TRAITS}
        off = np.mean([abs(v) for r, v in shift.items() if r != t])
        scores[t].append(shift[t] - float(off))
    layers = {t: candidates[int(np.argmax(scores[t]))] for t in TRAITS}
    return layers, scores
