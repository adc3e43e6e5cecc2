"""Activation sampling: persona prompts through the model, every layer, three positions.

Prompts (rows): for each character, its self-description (`scoring.self_description`) in the
activation-sampling system prompt (`formats.sampling_system`) followed by each of the
`instructions`; then the adjective prompts (`formats.adjective_system`, each trait adjective
with the first `adjective_instructions` instructions) for the probe check.

Per batch, `resid_post` at every layer is recorded at three positions: the last prompt token
(`last`), the mean over the prompt tokens (`prompt_mean`), both from one jitted forward pass
(`runtime.prompt_captures`), and the mean over the generated tokens (`gen_mean`), captured by
`jaxlens.generate` while it decodes. Batches are length-sorted and padded to a multiple of
`bucket` (a few compiled shapes; long prompts never pad short ones).

On disk (`out_dir`): one `shard_XXXXX.npz` per batch (`rows [b]`, `last`, `prompt_mean`,
`gen_mean` `[L, b, D]` float16), `prompts.jsonl` (one line per row: kind, character index,
instruction, adjective, trait, pole) and `manifest.json` (settings, shards done). A rerun with
the same prompts and settings skips the shards in the manifest; different settings refuse to
mix (`ManifestMismatch`). `load(out_dir, position)` returns `acts [L, N, D]` float32 in row
order and the row table.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float, Int

import jaxlens
import jaxlens.personality.formats as formats
import jaxlens.personality.runtime as runtime
import jaxlens.personality.scoring as scoring
from jaxlens.personality.items import ADJECTIVES, INSTRUCTIONS, TRAITS

POSITIONS = ("last", "prompt_mean", "gen_mean")


class ManifestMismatch(ValueError):
    """An output folder holding activations sampled with other prompts or settings."""


@dataclass(frozen=True, kw_only=True)
class SampleConfig:
    """instructions: how many of the instruction texts each character answers (1..their count).
    texts: the instruction texts (None: the bundled `INSTRUCTIONS`; `load_instructions` reads a
    file). items_per_trait: answered items per trait in the self-description (1..10; None: all
    50). adjective_instructions: instructions per adjective prompt (0 skips the adjective check).
    batch_size, bucket: batch rows and width rounding. max_new_tokens: generated tokens."""

    instructions: int = 10
    texts: tuple[str, ...] | None = None
    items_per_trait: int | None = 2
    adjective_instructions: int = 2
    batch_size: int = 32
    bucket: int = 32
    max_new_tokens: int = 32

    def __post_init__(self):
        n = len(self.instruction_texts)
        if not 1 <= self.instructions <= n:
            raise ValueError(f"SampleConfig.instructions: expected 1..{n}, got {self.instructions}")
        if self.items_per_trait is not None and not 1 <= self.items_per_trait <= 10:
            raise ValueError(
                f"SampleConfig.items_per_trait: expected 1..10 or None, got {self.items_per_trait}"
            )
        if not 0 <= self.adjective_instructions <= n:
            raise ValueError(f"SampleConfig.adjective_instructions: expected 0..{n}")
        for name in ("batch_size", "bucket", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"SampleConfig.{name}: expected >= 1")

    @property
    def instruction_texts(self) -> tuple[str, ...]:
        return INSTRUCTIONS if self.texts is None else tuple(self.texts)


def build_prompts(
    answers: Int[np.ndarray, "characters 50"], config: SampleConfig
) -> tuple[list[list[dict]], list[dict]]:
    """Conversations and their row table from the characters' Likert answers (1-5)."""
    convs, rows = [], []
    for c in range(answers.shape[0]):
        system = formats.sampling_system(
            scoring.self_description(answers[c], config.items_per_trait)
        )
        for i in range(config.instructions):
            convs.append(
                [
                    {"role": "system", "content": system},
                    {"role": "user", "content": config.instruction_texts[i]},
                ]
            )
            rows.append({"kind": "persona", "character": c, "instruction": i})
    for trait in TRAITS:
        for pole in ("positive", "negative"):
            for adjective in ADJECTIVES[trait][pole]:
                for i in range(config.adjective_instructions):
                    system = formats.adjective_system(adjective)
                    convs.append(
                        [
                            {"role": "system", "content": system},
                            {"role": "user", "content": config.instruction_texts[i]},
                        ]
                    )
                    rows.append(
                        {
                            "kind": "adjective",
                            "trait": trait,
                            "pole": pole,
                            "adjective": adjective,
                            "instruction": i,
                        }
                    )
    return convs, rows


def _fingerprint(convs, config: SampleConfig, model_path: str) -> str:
    settings = asdict(config)
    if settings["texts"] is None:  # the bundled instructions: fingerprints as before `texts`
        del settings["texts"]
    h = hashlib.sha256(json.dumps([convs, settings, str(model_path)]).encode())
    return h.hexdigest()[:16]


def sample(
    model: jaxlens.LoadedModel,
    answers: Int[ArrayLike, "characters 50"],
    out_dir: str | os.PathLike,
    *,
    config: SampleConfig = SampleConfig(),
    model_path: str = "",
    progress=None,
) -> Path:
    """Samples (or finishes sampling) the activations of every prompt into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    convs, rows = build_prompts(np.asarray(answers), config)
    fp = _fingerprint(convs, config, model_path)
    manifest_path = out / "manifest.json"
    manifest = {"fingerprint": fp, "config": asdict(config), "n_rows": len(rows), "shards": []}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old["fingerprint"] != fp:
            raise ManifestMismatch(
                f"{out}: holds activations of other prompts or settings (fingerprint "
                f"{old['fingerprint']}, now {fp}); use another folder"
            )
        manifest = old
    (out / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = {s["file"] for s in manifest["shards"]}
    capture = jaxlens.Capture((runtime.SITE,), reduce="mean")
    all_batches = list(
        runtime.batches(model.tokenizer, convs, batch_size=config.batch_size, bucket=config.bucket)
    )
    it = progress(all_batches, desc="sample", unit="batch") if progress else all_batches
    for k, batch in enumerate(it):
        name = f"shard_{k:05d}.npz"
        if name in done:
            continue
        last, mean = runtime.prompt_captures(model, batch)
        gen = runtime.generate(model, batch, max_new_tokens=config.max_new_tokens, capture=capture)
        gen_mean = np.asarray(gen.captures[runtime.SITE], np.float32)[:, : len(batch.rows)]
        np.savez(
            out / name,
            rows=batch.rows,
            last=last.astype(np.float16),
            prompt_mean=mean.astype(np.float16),
            gen_mean=gen_mean.astype(np.float16),
        )
        manifest["shards"].append({"file": name, "rows": len(batch.rows)})
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, manifest_path)
    return out


def load(
    out_dir: str | os.PathLike, position: str
) -> tuple[Float[np.ndarray, "L N D"], list[dict]]:
    """`acts [L, N, D]` float32 at `position` (N prompts, in row order), and the row table."""
    if position not in POSITIONS:
        raise ValueError(f"position={position!r}: expected one of {POSITIONS}")
    out = Path(out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = [json.loads(x) for x in (out / "prompts.jsonl").read_text().splitlines() if x]
    if sum(s["rows"] for s in manifest["shards"]) != len(rows):
        raise FileNotFoundError(
            f"{out}: sampling is not finished ({len(manifest['shards'])} shards)"
        )
    parts, index = [], []
    for s in manifest["shards"]:
        with np.load(out / s["file"]) as z:
            parts.append(z[position].astype(np.float32))
            index.append(z["rows"])
    acts = np.concatenate(parts, axis=1)
    order = np.argsort(np.concatenate(index))
    return acts[:, order], rows
