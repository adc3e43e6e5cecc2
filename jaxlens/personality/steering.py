"""Steering along the probe directions, read out in forced choice and open-ended replies.

Recipes (`Recipe`), both on `resid_post`:

- `"last"`: at the last prompt token, at every layer, add `alpha * n_l * r_l` (each layer's own
  unit direction). With `Recipe.units="norm"` (the default) `n_l` is the mean residual norm at
  layer `l` over the study's prompts (`mean_norms`, unsteered, last prompt token), so a strength
  means the same on any model; with `units="absolute"` (the paper's reading, strengths around
  +-0.4) `n_l = 1`, a push that is tiny next to residual norms in the tens or hundreds.
- `"band"`: at every position (prompt and generated), over a band of layers around the probe's
  best layer, `h += c * ||h|| * r_l` (`jaxlens.steer(..., norm_scaled=True)`), c up to +-0.3.

Forced choice (`forced_choice`): for each trait, `orders` orders of its 10 self-statements
(lettered A-J, `formats.forced_choice_user`; balanced rotations, `statement_orders`), without
and with a persona description (the character cards of `context` roster characters) in the
system prompt. Two readouts per prompt:
from the option probabilities, the probability mass of the first reply token on the letters of
trait-positive statements (renormalised over A-J: the model lists its picks in any order, so
this is the expected fraction of positive picks); and from the greedy generated picks
(`formats.parse_picks`, NaN when the reply does not parse). Strength 0 is the unsteered model.

Open-ended (`open_ended`): steered greedy replies to instructions without a persona, scored by
the probe's own readout (the unsteered model's mean `resid_post` over the rendered instruction +
reply at the probe layer, through the probe) and optionally by a judge model (any `load_hf`
directory with a chat template), asked on the Likert scale how much the reply shows the trait's
first positive adjective (expected value of the option tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Bool, Float

import jaxlens
import jaxlens.personality.formats as formats
import jaxlens.personality.runtime as runtime
import jaxlens.personality.scoring as scoring
from jaxlens.personality.items import ADJECTIVES, INSTRUCTIONS, SELF_STATEMENTS, TRAITS
from jaxlens.personality.personas import Character

RECIPES = ("band", "last")
UNITS = ("norm", "absolute")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """name: "band" or "last". strengths: the sweep (c for "band", alpha for "last").
    band: layers on each side of the centre layer ("band" only, >= 0). units ("last" only):
    "norm" (alpha in units of the layer's mean residual norm) or "absolute" (the paper's)."""

    name: str = "band"
    strengths: tuple[float, ...] = (-0.3, -0.15, 0.0, 0.15, 0.3)
    band: int = 1
    units: str = "norm"

    def __post_init__(self):
        if self.name not in RECIPES:
            raise ValueError(f"Recipe.name={self.name!r}: expected one of {RECIPES}")
        if not self.strengths:
            raise ValueError("Recipe.strengths: expected at least one strength")
        if self.band < 0:
            raise ValueError(f"Recipe.band: expected >= 0, got {self.band}")
        if self.units not in UNITS:
            raise ValueError(f"Recipe.units={self.units!r}: expected one of {UNITS}")


def strengths(recipe: Recipe, scale: float = 1.0) -> tuple[float, ...]:
    """The recipe's strengths times `scale` (the factor chosen per trait,
    `questionnaire.choose_steering`)."""
    return tuple(float(c) * float(scale) for c in recipe.strengths)


def mean_norms(
    model: jaxlens.LoadedModel, convs, *, batch_size: int = 32
) -> Float[np.ndarray, " L"]:
    """The mean `resid_post` norm at the last prompt token per layer over `convs` (unsteered):
    the unit of the "last" recipe's strengths."""
    total = np.zeros(model.config.n_layers)
    for batch in runtime.batches(model.tokenizer, convs, batch_size=min(batch_size, len(convs))):
        last, _ = runtime.prompt_captures(model, batch)  # [L, b, D]
        total += np.linalg.norm(last, axis=-1).sum(1)
    return total / len(convs)


def interventions(
    recipe: Recipe,
    directions: Float[np.ndarray, "L D"],
    best_layer: int,
    strength: float,
    *,
    norms: Float[np.ndarray, " L"] | None = None,
) -> jaxlens.Interventions:
    """The intervention pytree of one recipe at one strength (`directions [L, D]`); the "band"
    centres on `best_layer`. `norms [L]` (`mean_norms`) is required by "last" in "norm" units."""
    n_layers = directions.shape[0]
    if recipe.name == "last":
        layers = list(range(n_layers))
        vectors = directions[layers]
        if recipe.units == "norm":
            if norms is None:
                raise ValueError('Recipe "last" in units="norm": pass norms=mean_norms(...)')
            vectors = vectors * np.asarray(norms, np.float32)[layers, None]
        return jaxlens.steer(runtime.SITE, layers, vectors, alpha=strength, positions="last")
    lo, hi = max(0, best_layer - recipe.band), min(n_layers, best_layer + recipe.band + 1)
    layers = list(range(lo, hi))
    return jaxlens.steer(
        runtime.SITE, layers, directions[layers], alpha=strength, positions="all", norm_scaled=True
    )


def statement_orders(orders: int, seed: int = 0) -> np.ndarray:
    """`[orders, 10]`: which statement each letter A-J shows, per order.

    Orders are rotations of a shuffled order, spread evenly over blocks of up to 10 (a new
    shuffle per block), so every statement moves through the letters: with 10 orders each one
    takes each letter exactly once. A steering direction also pushes the letter tokens' logits
    directly; with a few independent shuffles that push passes for a shift in the picks, with
    balanced rotations it cancels."""
    rng = np.random.default_rng(seed)
    block = min(orders, 10)
    out = []
    for k in range(orders):
        if k % block == 0:
            base = rng.permutation(10)
        out.append(np.roll(base, (k % block) * 10 // block))
    return np.array(out)


def forced_choice_prompts(trait: str, orders: int, context: list[Character], seed: int = 0):
    """Conversations and, per conversation, the mask `[10]` of trait-positive letters
    (`statement_orders(orders, seed)`, each without and with every context card)."""
    systems = [None] + [
        formats.card_system(c.character, c.franchise, c.description) for c in context
    ]
    convs, positive, with_context = [], [], []
    for order in statement_orders(orders, seed):
        user = {
            "role": "user",
            "content": formats.forced_choice_user([SELF_STATEMENTS[trait][i] for i in order]),
        }
        for s in systems:
            convs.append(([{"role": "system", "content": s}] if s else []) + [user])
            positive.append(order < 5)
            with_context.append(s is not None)
    return convs, np.array(positive), np.array(with_context)


def forced_choice(
    model: jaxlens.LoadedModel,
    convs: list[list[dict]],
    positive: Bool[np.ndarray, "prompts 10"],
    steer: jaxlens.Interventions | None = None,
    *,
    batch_size: int = 32,
    generated: bool = True,
    max_new_tokens: int = 16,
) -> tuple[Float[np.ndarray, " prompts"], Float[np.ndarray, " prompts"]]:
    """`(from_probs, from_picks)`: the fraction of trait-positive picks per prompt, from the
    option probabilities and from the parsed greedy reply (NaN where it does not parse)."""
    letters = [runtime.token_id(model.tokenizer, ch) for ch in formats.LETTERS]
    probs = np.zeros(len(convs))
    picks = np.full(len(convs), np.nan)
    for batch in runtime.batches(model.tokenizer, convs, batch_size=min(batch_size, len(convs))):
        logp = runtime.next_token_logprobs(model, batch, letters, steer)
        p = np.exp(logp - logp.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        probs[batch.rows] = (p * positive[batch.rows]).sum(-1)
        if generated:
            out = runtime.generate(model, batch, max_new_tokens=max_new_tokens, interventions=steer)
            for r, text in zip(
                batch.rows, runtime.decode(model, out, len(batch.rows)), strict=True
            ):
                got = formats.parse_picks(text)
                if got is not None:
                    picks[r] = positive[r][got].mean()
    return probs, picks


def sweep(
    model,
    probes_by_trait,
    recipe: Recipe,
    *,
    context,
    orders=4,
    batch_size=32,
    generated=True,
    progress=None,
    layers=None,
    scales=None,
    norms=None,
):
    """Forced-choice readouts for every (steered trait, strength, read trait).

    `layers`: the centre layer per trait (default each probe's best layer); `scales`: a factor
    on the recipe's strengths per trait (`strengths`); `norms`: mean residual norms per layer
    (`interventions`). Returns records: steered, strength, read, context (bool), from_probs,
    from_picks (means).
    """
    prompts = {t: forced_choice_prompts(t, orders, context, seed=i) for i, t in enumerate(TRAITS)}
    jobs = [(s, c) for s in TRAITS for c in strengths(recipe, (scales or {}).get(s, 1.0))]
    records = []
    for steered, strength in (
        progress(jobs, desc=f"steer {recipe.name}", unit="setting") if progress else jobs
    ):
        probe = probes_by_trait[steered]
        centre = probe.best_layer if layers is None else layers[steered]
        steer = interventions(
            recipe, probe.directions.astype(np.float32), centre, strength, norms=norms
        )
        for read in TRAITS if strength != 0 or steered == TRAITS[0] else []:
            convs, positive, ctx = prompts[read]
            fp, fg = forced_choice(
                model, convs, positive, steer, batch_size=batch_size, generated=generated
            )
            for flag in (False, True):
                sel = ctx == flag
                if sel.any():
                    picked = fg[sel][np.isfinite(fg[sel])]
                    records.append(
                        {
                            "steered": steered, "strength": strength, "read": read, "context": flag,
                            "from_probs": float(fp[sel].mean()),
                            "from_picks": float(picked.mean()) if picked.size else None,
                        }
                    )  # fmt: skip
    # strength 0 is the same unsteered model for every steered trait: copy its readouts
    zero = [r for r in records if r["strength"] == 0]
    for steered in TRAITS[1:]:
        records += [dict(r, steered=steered) for r in zero if r["steered"] == TRAITS[0]]
    return records


def dose_response(records, steered: str, read: str, context: bool, readout="from_probs"):
    """`(strengths, values)` sorted by strength."""
    pts = sorted(
        (r["strength"], r[readout])
        for r in records
        if r["steered"] == steered and r["read"] == read and r["context"] == context
    )
    return np.array([p[0] for p in pts]), np.array([np.nan if p[1] is None else p[1] for p in pts])


def shift_matrix(records, context: bool, readout="from_probs") -> np.ndarray:
    """`[steered, read]` readout at the largest strength minus at the smallest."""
    out = np.full((len(TRAITS), len(TRAITS)), np.nan)
    for i, s in enumerate(TRAITS):
        for j, t in enumerate(TRAITS):
            x, y = dose_response(records, s, t, context, readout)
            if len(x) >= 2:
                out[i, j] = y[-1] - y[0]
    return out


def is_monotone(values) -> bool:
    """Non-decreasing along the sweep (NaN fails)."""
    v = np.asarray(values, np.float64)
    return bool(np.all(np.isfinite(v)) and np.all(np.diff(v) >= -1e-9))


def summary_rows(records, context: bool, readout: str = "from_probs") -> list[dict]:
    """One row per steered trait: the on-target shift (largest minus smallest strength), the
    mean |off-target| shift, whether the on-target curve is monotone, and `clean`: positive,
    monotone and more than twice the mean |off-target| shift."""
    m = shift_matrix(records, context, readout)
    rows = []
    for i, t in enumerate(TRAITS):
        on, off = float(m[i, i]), float(np.nanmean(np.abs(np.delete(m[i], i))))
        mono = is_monotone(dose_response(records, t, t, context, readout)[1])
        rows.append(
            {"trait": t, "on-target shift": on, "mean |off-target|": off, "monotone": mono,
             "clean": bool(on > 0 and mono and on > 2 * off)}
        )  # fmt: skip
    return rows


def open_ended(
    model, probe, trait, recipe, *, instructions=3, max_new_tokens=48, judge=None, batch_size=16,
    layer=None, scale=1.0, norms=None, texts=INSTRUCTIONS,
):  # fmt: skip
    """Steered replies per strength, scored by the probe (and the judge): list of records.
    `layer`: the band's centre (default the probe's best layer); `scale`: a factor on the
    recipe's strengths; `norms`: see `interventions`; `texts`: the instructions (the first
    `instructions` are asked)."""
    convs = [[{"role": "user", "content": texts[i]}] for i in range(min(instructions, len(texts)))]
    centre = probe.best_layer if layer is None else layer
    records = []
    for strength in strengths(recipe, scale):
        steer = interventions(
            recipe, probe.directions.astype(np.float32), centre, strength, norms=norms
        )
        replies = [""] * len(convs)
        for batch in runtime.batches(
            model.tokenizer, convs, batch_size=min(batch_size, len(convs))
        ):
            out = runtime.generate(model, batch, max_new_tokens=max_new_tokens, interventions=steer)
            for r, t in zip(batch.rows, runtime.decode(model, out, len(batch.rows)), strict=True):
                replies[r] = t
        full = [
            c + [{"role": "assistant", "content": t}] for c, t in zip(convs, replies, strict=True)
        ]
        means = np.zeros((len(full),))
        for batch in runtime.batches(
            model.tokenizer,
            full,
            batch_size=min(batch_size, len(full)),
            add_generation_prompt=False,
        ):
            _, mean = runtime.prompt_captures(model, batch)  # [L, b, D]
            means[batch.rows] = probe.predict(mean)[probe.best_layer]
        rec = {
            "trait": trait,
            "strength": strength,
            "probe": float(means.mean()),
            "replies": replies,
        }
        if judge is not None:
            rec["judge"] = float(np.mean(judge_scores(judge, trait, convs, replies)))
        records.append(rec)
    return records


def judge_conversation(trait: str, request: str, reply: str) -> list[dict]:
    """The judge's question about one reply: does it show the trait's positive pole? (1..5)"""
    adjective = ADJECTIVES[trait]["positive"][0]
    return [
        {
            "role": "user",
            "content": f'Request: "{request}"\nReply: "{reply}"\n'
            f'How well does this describe the author of the reply? "The author is {adjective}."\n'
            "Answer 1-5 (1 strongly disagree .. 5 strongly agree).",
        }
    ]


def judge_scores(judge, trait, convs, texts, batch_size=16) -> np.ndarray:
    """Likert expected value (1..5) of "this reply shows a <adjective> person", per reply,
    read from the judge's option-token probabilities."""
    asks = [
        judge_conversation(trait, c[0]["content"], t) for c, t in zip(convs, texts, strict=True)
    ]
    ids = [runtime.token_id(judge.tokenizer, o) for o in scoring.OPTIONS]
    ev = np.zeros(len(asks))
    for batch in runtime.batches(judge.tokenizer, asks, batch_size=min(batch_size, len(asks))):
        ev[batch.rows] = scoring.readouts(runtime.next_token_logprobs(judge, batch, ids))["ev"]
    return ev
