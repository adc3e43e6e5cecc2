"""From a model to latents: the model, its text, per-layer SAEs and the batch sources.

- `open_model(model_dir, mesh=...)`: `jaxlens.load_model` of the directory (default
  `jaxlens.BUILTIN_MODEL`); a missing directory raises `jaxlens.hf.CheckpointNotFoundError`
  naming it. A checkpoint without tokenizer files (e.g. a random model written by
  `jaxlens.save_hf`) still loads, with `tokenizer=None`.
- `Text`: encode/decode through the model's HF tokenizer, or bytes (id = 3 + byte) when it has
  none.
- `corpus_text`: `sae.stories` documents (the built-in model's plain-text corpus).
- `train_saes`: one TopK SAE per layer at `resid_pre`, all layers from one model forward per
  batch (`sae.ModelActivations` over every layer, `sae.fit` on the `[L, B, D]` stream);
  `load_saes` reads SAELens folders instead (e.g. `gpt2-small-res-jb`'s per-layer folders).
- `LayerSource`: one `jaxlens.forward` per batch of windows captures `resid_pre` of every layer
  (position 0, BOS, left out unless `include_bos`); each SAE encodes its layer. Called, it
  yields latents `[L, T, N]` in a fixed order, the source `sae.evolution.stream` passes read;
  `token(i)` maps a global token index back to (window, position) for the browser's contexts.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxlens
import sae
from sae import stories


class SourceError(ValueError):
    """SAEs that do not fit the model (count, width) or each other."""


def open_model(model_dir: str | Path | None = None, *, mesh: Any = None) -> jaxlens.LoadedModel:
    """The analysed model: `jaxlens.load_model(model_dir or jaxlens.BUILTIN_MODEL, mesh=mesh)`
    (with a mesh the weights load straight into their shards and `put` shards batches over it).

    Raises:
      CheckpointNotFoundError: `model_dir` is not a directory (the message names it).
    """
    root = Path(jaxlens.BUILTIN_MODEL if model_dir is None else model_dir)
    # A bare checkpoint (weights and config.json only) loads too: its text is bytes (`Text`).
    return jaxlens.load_model(root, mesh=mesh, require_tokenizer=False)


@dataclasses.dataclass
class Text:
    """Encode text to ids and ids back to display strings."""

    tokenizer: Any
    bos: int | None

    @classmethod
    def for_model(cls, model: jaxlens.LoadedModel) -> Text:
        """The model's tokenizer (bytes when it has none); BOS from it, else from the config."""
        tok, config = model.tokenizer, model.config
        if tok is None:
            return cls(None, config.bos_token_id)
        bos = tok.bos_token_id if tok.bos_token_id is not None else config.bos_token_id
        return cls(tok, bos)

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            return [3 + b for b in text.encode("utf-8")]
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def piece(self, token: int) -> str:
        if self.tokenizer is None:
            return bytes([token - 3]).decode("latin-1") if token >= 3 else f"<{token}>"
        return self.tokenizer.decode([int(token)])

    def window(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(([self.bos] if self.bos is not None else []) + list(ids), np.int32)


def corpus_text(n_docs: int, *, seed: int = 0) -> str:
    """`sae.stories` documents separated by blank lines (the `.txt` layout `sae.load_tokens`
    reads)."""
    return "\n\n".join(stories.stories(seed=seed, n=n_docs)) + "\n"


def train_saes(
    model: jaxlens.LoadedModel,
    tokens,
    *,
    expansion: int,
    k: int,
    steps: int,
    batch_size: int,
    seed: int = 0,
    callback=None,
) -> tuple[list[Any], list[Any]]:
    """One TopK SAE per layer from one shared forward per batch; `(configs, params list)`.
    On the model's mesh: tokens over `data` x `fsdp`, latents over `tensor` (`sae.fit`)."""
    config = model.config
    layers = tuple(range(config.n_layers))
    source = sae.ModelActivations(
        model.params,
        config,
        tokens,
        site="resid_pre",
        layers=layers,
        sequences_per_forward=min(16, len(tokens)),
        buffer_tokens=4 * batch_size,
        key=seed,
    )
    cfg = sae.SAEConfig(
        d_in=config.d_model, d_sae=expansion * config.d_model, architecture="topk", k=k
    )
    out = sae.fit(
        source,
        cfg,
        key=jax.random.key(seed),
        steps=steps,
        batch_size=batch_size,
        mesh=model.mesh,
        callback=callback,
    )
    return [cfg] * len(layers), list(out)


def load_saes(folders: list[str | Path], config) -> tuple[list[Any], list[Any]]:
    """SAELens folders, one per layer in layer order."""
    if len(folders) != config.n_layers:
        raise SourceError(
            f"got {len(folders)} SAE folders for a model of {config.n_layers} "
            "layers; give one per layer, in layer order"
        )
    loaded = [sae.load_saelens(f) for f in folders]
    widths = {c.d_sae for c, _ in loaded}
    if len(widths) != 1 or any(c.d_in != config.d_model for c, _ in loaded):
        raise SourceError(
            f"SAEs must share d_sae and read d_model={config.d_model}; got "
            f"{[(c.d_in, c.d_sae) for c, _ in loaded]}"
        )
    return [c for c, _ in loaded], [p for _, p in loaded]


def random_saes(
    model: jaxlens.LoadedModel, tokens, *, d_sae: int, l0, seed: int = 0
) -> tuple[list[Any], list[Any]]:
    """Random ReLU SAEs, one per layer at `resid_pre`, each with its bias set so that a token
    fires `l0[layer]` latents on average (a scalar: every layer): the scale bench's and the
    tests' stand-in for a trained release of the same shape and L0.

    Each latent's threshold is the normal quantile `mean + std * z` of its pre-activations on
    `tokens [S, T]` (z for a firing rate of l0 / d_sae): an empirical quantile that far in the
    tail needs far more tokens than a calibration batch has (at 13 of 24,576 latents, one in
    1,900 tokens) and overshoots, while a random projection of the residual is close to normal.
    """
    config = model.config
    l0 = np.broadcast_to(np.asarray(l0, np.float64), (config.n_layers,))
    capture = jaxlens.Capture(sites=("resid_pre",), layers=tuple(range(config.n_layers)))
    x = jaxlens.forward(model.params, jnp.asarray(tokens), config=config, capture=capture)
    x = np.asarray(x.captures["resid_pre"], np.float32)[:, :, 1:].reshape(
        config.n_layers, -1, config.d_model
    )
    cfg = sae.SAEConfig(d_in=config.d_model, d_sae=d_sae, architecture="relu")
    params = []
    for layer in range(config.n_layers):
        p = sae.init(jax.random.key(seed + layer), cfg)
        pre = np.asarray(sae.model.pre_activations(p, jnp.asarray(x[layer])), np.float64)
        z = statistics.NormalDist().inv_cdf(1.0 - l0[layer] / d_sae)
        cut = pre.mean(0) + z * pre.std(0)  # [N]: each latent fires about as often
        params.append({**p, "b_enc": p["b_enc"] - jnp.asarray(cut, p["b_enc"].dtype)})
    return [cfg] * config.n_layers, params


class LayerSource:
    """Latents of every layer for a fixed set of token windows (module docstring)."""

    def __init__(
        self,
        model: jaxlens.LoadedModel,
        tokens,
        sae_configs,
        sae_params,
        *,
        batch: int = 16,
        include_bos: bool = False,
    ):
        self.model, config = model, model.config
        self.tokens = np.asarray(tokens)
        n = (len(self.tokens) // batch) * batch
        if n == 0:
            raise SourceError(f"{len(self.tokens)} windows are fewer than one batch of {batch}")
        self.tokens = self.tokens[:n]
        self.batch = batch
        self.sae_configs, self.sae_params = sae_configs, sae_params
        self.first = 0 if include_bos else 1  # position 0 (BOS) is left out by default
        self.positions = self.tokens.shape[1] - self.first
        first = self.first
        capture = jaxlens.Capture(sites=("resid_pre",), layers=tuple(range(config.n_layers)))

        def resid(p, tok):
            x = jaxlens.forward(p, tok, config=config, capture=capture).captures["resid_pre"]
            return x[:, :, first:].reshape(x.shape[0], -1, x.shape[-1])  # [L, b * (T-1), D]

        self._resid = jax.jit(resid)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens) * self.positions

    def residuals(self, tok: np.ndarray) -> jax.Array:
        """`resid_pre` of every layer `[L, b * (T-1), D]` for windows `tok [b, T]`."""
        return self._resid(self.model.params, self.model.put(tok))

    def encode(self, x: jax.Array) -> jax.Array:
        return jnp.stack(
            [
                sae.encode(p, x[i], config=c)
                for i, (c, p) in enumerate(zip(self.sae_configs, self.sae_params, strict=True))
            ]
        )

    def __call__(self):
        for s in range(0, len(self.tokens), self.batch):
            yield self.encode(self.residuals(self.tokens[s : s + self.batch]))

    def with_errors(self):
        """Batches of `(latents [L, T, N], next-SAE errors [L, T, D])`."""
        for s in range(0, len(self.tokens), self.batch):
            x = self.residuals(self.tokens[s : s + self.batch])
            err = jnp.stack(
                [
                    x[i] - sae.reconstruct(p, x[i], config=c)
                    for i, (c, p) in enumerate(zip(self.sae_configs, self.sae_params, strict=True))
                ]
            )
            yield self.encode(x), err

    def token(self, index: int) -> tuple[int, int]:
        """A global token index as (window, position in the window)."""
        return index // self.positions, self.first + index % self.positions

    def final_token_latents(self, window: np.ndarray) -> np.ndarray:
        """`[L, N]` latents at the last position of one window."""
        config = self.model.config
        x = jaxlens.forward(
            self.model.params,
            jnp.asarray(window)[None],
            config=config,
            capture=jaxlens.Capture(sites=("resid_pre",), layers=tuple(range(config.n_layers))),
        )
        last = x.captures["resid_pre"][:, 0, -1]  # [L, D]
        return np.asarray(self.encode(last[:, None]))[:, 0]
