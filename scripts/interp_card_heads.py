"""Which attention heads carry a character card's trait into the questionnaire answer.

For each Big Five trait, two character cards of the same persona differ in that trait only
(level `--high` vs `--low`, the other four levels kept; the personas module's own wording,
`personas.describe`), and each of the trait's IPIP-50 items is asked after each card, as the
study asks them (`scoring.item_conversation`). The metric is the expected keyed Likert answer
(1..5) at the answer position: the option probabilities of "1".."5" renormalised over the five
options (`scoring.readouts`), `6 - x` for reverse-keyed items, averaged over the trait's items
and the personas. Clean = the high card, corrupted = the low card, so the effect of the card
is `metric(clean) - metric(corrupted)`.

- `jaxlens.patch_sweep(site="z", over=("layer", "head"))`: every head's `z` of the clean run,
  at every position, patched into the corrupted run, one head at a time, all five traits in
  one compiled program (the metric is a `[5]` vector, one entry per trait).
- `jaxlens.attribution_patch`: the first-order estimate of the same grid (one backward pass
  per trait), beside it.
- The top heads of each trait patched together: the fraction of the effect they recover.

The two prompts of a pair must have the same token length (a sweep patches column by column):
every level word of `LEVEL_WORDS` but level 3 ("moderately ...") is one token in the built-in
model's tokenizer, so levels 1, 2, 4, 5 align; a pair that does not is refused with its lengths.

    python3 scripts/interp_card_heads.py                 # the built-in model, 2 personas
    python3 scripts/interp_card_heads.py --personas 1 --traits EXT --run runs/card_heads_ext

Writes a run folder (`--run`, default runs/interp_card_heads): report.md, heads.json, one
heatmap per trait (patching and attribution side by side) and a summary table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxlens
import jaxlens.personality.runtime as runtime
import jaxlens.personality.scoring as scoring
from jaxlens.hf import tokenizer_pad_id
from jaxlens.personality.items import IPIP50, TRAITS
from jaxlens.personality.personas import Character, Persona, make_roster, to_character

METRICS = ("ev", "logit_diff")


class CardPairs(NamedTuple):
    """Aligned clean (high card) and corrupted (low card) prompts, one row per (persona, item)."""

    clean: np.ndarray  # [R, T] int32
    corrupted: np.ndarray  # [R, T] int32
    mask: np.ndarray  # [R, T] bool, the same for both
    trait: np.ndarray  # [R] index into the traits asked
    keyed: np.ndarray  # [R] +1 / -1
    traits: tuple[str, ...]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=jaxlens.BUILTIN_MODEL, help="checkpoint directory")
    p.add_argument("--traits", default=",".join(TRAITS), help="comma-separated, e.g. EXT,AGR")
    p.add_argument("--personas", type=int, default=2, help="base personas (bundled roster)")
    p.add_argument("--high", type=int, default=5, help="the clean card's level (1..5)")
    p.add_argument("--low", type=int, default=1, help="the corrupted card's level (1..5)")
    p.add_argument(
        "--metric", choices=METRICS, default="ev",
        help="ev: expected keyed Likert answer; logit_diff: keyed logit of '5' minus '1'",
    )  # fmt: skip
    p.add_argument("--top", type=int, default=3, help="top heads per trait patched together")
    p.add_argument("--run", default="runs/interp_card_heads", help="run folder")
    return p.parse_args(argv)


def card_pair(base: Character, trait: str, high: int, low: int) -> tuple[Character, Character]:
    """`base` with `trait` at level `high` and at level `low`, the other four levels kept."""
    if base.profile is None:
        raise ValueError(f"card_pair: character {base.character!r} has no profile")
    i = TRAITS.index(trait)

    def at(level: int) -> Character:
        profile = tuple(level if j == i else v for j, v in enumerate(base.profile))
        return to_character(Persona(base.character, profile, base.franchise))

    return at(high), at(low)


def card_pairs(
    tokenizer, bases: Sequence[Character], traits: Sequence[str], *, high: int, low: int
) -> CardPairs:
    """Every (persona, trait item) asked after the high and the low card, left padded alike."""
    clean, corrupted, trait_of, keyed = [], [], [], []
    for base in bases:
        for t, trait in enumerate(traits):
            hi, lo = card_pair(base, trait, high, low)
            for item in (it for it in IPIP50 if it.trait == trait):
                a, b = (
                    jaxlens.apply_chat_template(
                        tokenizer, scoring.item_conversation(c, item), add_generation_prompt=True
                    )
                    for c in (hi, lo)
                )
                if len(a) != len(b):
                    raise ValueError(
                        f"cards of {base.character!r} at {trait} {high} / {low}: {len(a)} and "
                        f"{len(b)} tokens; choose levels whose words have one length"
                    )
                clean.append(a), corrupted.append(b), trait_of.append(t), keyed.append(item.keyed)
    pad = jaxlens.prompts.pad_batch(clean + corrupted, pad_id=tokenizer_pad_id(tokenizer))
    n = len(clean)
    return CardPairs(
        pad.tokens[:n].astype(np.int32), pad.tokens[n:].astype(np.int32),
        pad.attention_mask[:n].astype(bool), np.array(trait_of), np.array(keyed), tuple(traits),
    )  # fmt: skip


def keyed_metric(option_ids: Sequence[int], pairs: CardPairs, trait: int | None = None, *,
                 kind: str = "ev"):  # fmt: skip
    """`logits [R, k, V] -> [n_traits]` (or the scalar of one `trait`): each trait's mean over
    its rows at the last position of the expected keyed Likert answer (`kind="ev"`, 1..5) or
    of the keyed logit difference of "5" and "1" (`"logit_diff"`). One object per call: keep
    it to reuse its compiled program."""
    if kind not in METRICS:
        raise ValueError(f"metric kind={kind!r}: expected one of {METRICS}")
    ids = jnp.asarray(option_ids, jnp.int32)
    sign = jnp.asarray(pairs.keyed, jnp.float32)
    onehot = jax.nn.one_hot(pairs.trait, len(pairs.traits), dtype=jnp.float32)  # [R, n]
    weights = onehot / onehot.sum(0)

    def metric(logits):
        options = logits[:, -1, ids].astype(jnp.float32)  # [R, 5]
        if kind == "logit_diff":
            per_trait = (sign * (options[:, 4] - options[:, 0])) @ weights
        else:
            ev = jax.nn.softmax(options, axis=-1) @ jnp.arange(1.0, 6.0)
            per_trait = (3.0 + sign * (ev - 3.0)) @ weights  # keyed: 6 - ev where reversed
        return per_trait if trait is None else per_trait[trait]

    return metric


def endpoints(model, pairs: CardPairs, metric) -> tuple[np.ndarray, np.ndarray]:
    """The metric of the clean and of the corrupted run, `[n_traits]` each."""
    kw = dict(config=model.config, attention_mask=pairs.mask)
    clean = jaxlens.forward(model.params, pairs.clean, **kw).logits
    corrupted = jaxlens.forward(model.params, pairs.corrupted, **kw).logits
    return np.asarray(metric(clean)), np.asarray(metric(corrupted))


def head_sweep(model, pairs: CardPairs, metric) -> np.ndarray:
    """`[L, H, n_traits]`: the metric with one head's clean `z` patched in (all positions)."""
    out = jaxlens.patch_sweep(
        model.params, pairs.clean, pairs.corrupted, metric, config=model.config, site="z",
        over=("layer", "head"), attention_mask=pairs.mask, logits_last=1,
    )  # fmt: skip
    return np.asarray(out)


def trait_subset(pairs: CardPairs, t: int) -> CardPairs:
    """The rows of the `t`-th trait only (as a one-trait `CardPairs`)."""
    rows = pairs.trait == t
    return CardPairs(
        pairs.clean[rows], pairs.corrupted[rows], pairs.mask[rows], np.zeros(rows.sum(), int),
        pairs.keyed[rows], (pairs.traits[t],),
    )  # fmt: skip


def head_attribution(model, pairs: CardPairs, option_ids, kind: str = "ev") -> np.ndarray:
    """`[L, H, n_traits]`: attribution patching's estimate of `head_sweep - corrupted`, one
    forward and backward pass per trait over that trait's rows (the gradient needs a scalar)."""
    out = []
    for t in range(len(pairs.traits)):
        sub = trait_subset(pairs, t)
        attr = jaxlens.attribution_patch(
            model.params, sub.clean, sub.corrupted, keyed_metric(option_ids, sub, 0, kind=kind),
            config=model.config, site="z", over=("layer", "head"), attention_mask=sub.mask,
            logits_last=1,
        )  # fmt: skip
        out.append(np.asarray(attr))
    return np.stack(out, axis=-1)


def top_heads(effect: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The `k` (layer, head) of largest effect in `effect [L, H]`, largest first."""
    flat = np.argsort(-effect, axis=None)[:k]
    return [tuple(int(x) for x in np.unravel_index(i, effect.shape)) for i in flat]


def patch_heads(model, pairs: CardPairs, metric, heads: Sequence[tuple[int, int]]) -> np.ndarray:
    """The metric with the clean `z` of all `heads` patched in together, `[n_traits]`."""
    kw = dict(config=model.config, attention_mask=pairs.mask)
    captured = jaxlens.forward(model.params, pairs.clean, capture=jaxlens.Capture(("z",)), **kw)
    z = captured.captures["z"]  # [L, R, T, H, E]
    layers, hs = np.array([h[0] for h in heads]), np.array([h[1] for h in heads])
    values = z[layers, :, :, hs]  # [n, R, T, E]
    edit = jaxlens.head_patch("z", layers, hs, values)
    patched = jaxlens.forward(model.params, pairs.corrupted, interventions=edit, **kw)
    return np.asarray(metric(patched.logits))


def trait_rows(pairs, clean, corrupted, sweep, attr, top: int, recover) -> list[dict]:
    """One summary row per trait: the effect, its top heads and the fraction they recover."""
    rows = []
    for t, trait in enumerate(pairs.traits):
        effect = clean[t] - corrupted[t]
        delta = sweep[..., t] - corrupted[t]  # [L, H]
        heads = top_heads(delta, top)
        together = recover(heads)[t]
        rows.append({
            "trait": trait, "clean": clean[t], "corrupted": corrupted[t], "effect": effect,
            "top_heads": " ".join(f"L{la}H{h} ({delta[la, h] / effect:+.0%})" for la, h in heads),
            f"top{top}_together": (together - corrupted[t]) / effect,
            "all_heads_sum": delta.sum() / effect,
            "attr_corr": float(np.corrcoef(delta.ravel(), attr[..., t].ravel())[0, 1]),
            "attr_top": " ".join(f"L{la}H{h}" for la, h in top_heads(attr[..., t], top)),
        })  # fmt: skip
    return rows


def heatmap(trait: str, delta: np.ndarray, attr: np.ndarray, effect: float):
    """Patching and attribution side by side, as fractions of the card's effect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    lim = max(np.abs(delta).max(), np.abs(attr).max()) / abs(effect) or 1.0
    for ax, grid, name in zip(
        axes, (delta, attr), ("activation patching", "attribution"), strict=True
    ):
        im = ax.imshow(grid / effect, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(f"{trait}: {name}")
        ax.set_xlabel("head")
    axes[0].set_ylabel("layer")
    fig.colorbar(im, ax=axes, label="fraction of the card's effect")
    return fig


def main(argv=None) -> dict:
    args = parse_args(argv)
    traits = tuple(t for t in args.traits.split(",") if t)
    if any(t not in TRAITS for t in traits) or not traits:
        raise ValueError(f"--traits {args.traits!r}: expected names among {TRAITS}")
    run = jaxlens.runs.RunFolder(args.run, config=vars(args), command=sys.argv)
    model = jaxlens.load_model(args.model)
    option_ids = [runtime.token_id(model.tokenizer, o) for o in scoring.OPTIONS]
    pairs = card_pairs(
        model.tokenizer, make_roster(args.personas), traits, high=args.high, low=args.low
    )
    print(f"# {len(pairs.clean)} prompt pairs of {pairs.clean.shape[1]} tokens", flush=True)
    metric = keyed_metric(option_ids, pairs, kind=args.metric)
    start = time.perf_counter()
    clean, corrupted = endpoints(model, pairs, metric)
    sweep = head_sweep(model, pairs, metric)
    seconds = {"sweep_s": time.perf_counter() - start}
    attr = head_attribution(model, pairs, option_ids, args.metric)
    seconds["attribution_s"] = time.perf_counter() - start - seconds["sweep_s"]

    def recover(heads):
        return patch_heads(model, pairs, metric, heads)

    rows = trait_rows(pairs, clean, corrupted, sweep, attr, args.top, recover)
    for t, row in enumerate(rows):
        run.figure(f"heads_{row['trait']}", heatmap(row["trait"], sweep[..., t] - corrupted[t],
                                                    attr[..., t], row["effect"]))  # fmt: skip
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()), flush=True)  # fmt: skip
    run.summary(rows)
    run.section("How to read this", READING)
    run.section("Timings", jaxlens.runs.markdown_table(seconds))
    run.save_json("heads.json", {"rows": rows, "sweep": sweep, "attribution": attr,
                                 "clean": clean, "corrupted": corrupted, **seconds})  # fmt: skip
    run.write_report("Which heads carry a character card's trait")
    print(f"run folder: {run.path}")
    return {"rows": rows, "sweep": sweep, "attribution": attr}


READING = """\
`clean` / `corrupted`: the mean expected keyed answer (1..5) after the high / low card;
`effect` their difference. A head's number is the share of `effect` recovered when its clean
`z` (every position) replaces the corrupted one: `(patched - corrupted) / effect`. `topK_together`
patches the top K heads at once; `all_heads_sum` adds every single-head share (above 1: heads
overlap, below: the effect also runs through the MLPs and the residual stream of the card's
word). `attr_corr` is the correlation over heads between attribution patching and the sweep,
`attr_top` attribution's own top heads. Heatmaps: red heads move the answer toward the high
card, blue away from it."""


if __name__ == "__main__":
    import jaxlens.runs

    jaxlens.runs.run_script(main)
