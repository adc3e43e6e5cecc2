"""Activation sources for `sae.fit`: in-memory arrays, cached shards on disk, a live model.

A source has `iter_batches(batch_size, start_step=0)`, an iterator of `float32` batches `[B, D]`
(one SAE) or `[L, B, D]` (one SAE per layer), that is a pure function of the source's seed and
`start_step`: a resumed run asks for `start_step` and sees exactly the batches it would have.

- `ArraySource(data)`: `data [N, D]` or `[N, L, D]` in memory (or a memmap); each epoch is a
  seeded permutation of the N tokens, cut into N // B batches.
- `CachedActivations(directory)`: `.npy` shards `[n_i, D]` or `[n_i, L, D]` written by
  `write_cached_activations`, memory-mapped and sampled like an `ArraySource` over all shards.
- `ModelActivations(...)`: runs a `jaxlens` model over token windows (see `sae.tokens`) and
  captures one site at one or several layers in one forward; tokens go through a shuffle
  buffer (`buffer_tokens`) that mixes many sequences before batches leave it, so a batch never
  comes from a handful of documents. Resuming replays the stream (deterministic, model forward
  included) up to `start_step`. `ModelActivations.from_file(model, path, ...)` reads the token
  windows of a dataset file for a `jaxlens.LoadedModel` (its tokenizer, BOS, EOS and vocab).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sae.tokens import load_tokens


class ActivationSourceError(ValueError):
    """An activation source was given data of the wrong shape, type or size."""


class CachedActivationsNotFoundError(FileNotFoundError):
    """A cached-activations directory or one of its shards is missing."""


def _seed(key: Any) -> list[int]:
    if key is None:
        return [0]
    if isinstance(key, int):
        return [key]
    data = (
        jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    )
    return [int(v) for v in np.asarray(data).ravel()]


class ArraySource:
    """Seeded epoch-by-epoch batches from an array `[N, D]` or `[N, L, D]`."""

    def __init__(self, data: Any, *, key: Any = None):
        if getattr(data, "ndim", 0) not in (2, 3):
            raise ActivationSourceError(
                f"activations must be an array [N, D] or [N, L, D]; got shape "
                f"{getattr(data, 'shape', None)}"
            )
        if not np.issubdtype(data.dtype, np.floating):
            raise ActivationSourceError(f"activations must be floats; got dtype {data.dtype}")
        self.data = data
        self.seed = _seed(key)

    @property
    def n_tokens(self) -> int:
        return int(self.data.shape[0])

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.data[np.sort(idx)], np.float32)

    def iter_batches(self, batch_size: int, start_step: int = 0) -> Iterator[np.ndarray]:
        """Batches `[B, D]` (or `[L, B, D]`), epoch by epoch, from `start_step` on."""
        per_epoch = self.n_tokens // batch_size
        if per_epoch == 0:
            raise ActivationSourceError(
                f"{self.n_tokens} activations are fewer than one batch of {batch_size}"
            )
        step = start_step
        order, order_epoch = None, -1
        while True:
            epoch, offset = divmod(step, per_epoch)
            if epoch != order_epoch:
                order = np.random.default_rng(self.seed + [epoch]).permutation(self.n_tokens)
                order_epoch = epoch
            rows = self._rows(order[offset * batch_size : (offset + 1) * batch_size])
            yield rows if rows.ndim == 2 else np.swapaxes(rows, 0, 1)  # [N, L, D] -> [L, B, D]
            step += 1


class _Shards:
    """Several memory-mapped arrays addressed as one along their first axis."""

    def __init__(self, arrays: Sequence[np.ndarray]):
        self.arrays = arrays
        self.starts = np.cumsum([0] + [a.shape[0] for a in arrays])
        self.shape = (int(self.starts[-1]),) + arrays[0].shape[1:]
        self.ndim = arrays[0].ndim
        self.dtype = arrays[0].dtype

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        shard = np.searchsorted(self.starts, idx, side="right") - 1
        out = np.empty((len(idx),) + self.shape[1:], self.dtype)
        for s in np.unique(shard):
            where = shard == s
            out[where] = self.arrays[s][idx[where] - self.starts[s]]
        return out


def write_cached_activations(
    directory: str | os.PathLike, batches: Iterable[Any], *, shard_tokens: int = 1 << 16
) -> Path:
    """Write batches `[B, D]` or `[L, B, D]` as `.npy` shards `[n, D]` / `[n, L, D]`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pending: list[np.ndarray] = []
    names: list[str] = []

    def flush() -> None:
        if pending:
            name = f"acts_{len(names):05d}.npy"
            np.save(directory / name, np.concatenate(pending).astype(np.float32))
            names.append(name)
            pending.clear()

    for batch in batches:
        arr = np.asarray(batch, np.float32)
        pending.append(arr if arr.ndim == 2 else np.swapaxes(arr, 0, 1))
        if sum(p.shape[0] for p in pending) >= shard_tokens:
            flush()
    flush()
    if not names:
        raise ActivationSourceError("no batches were given to write")
    (directory / "meta.json").write_text(json.dumps({"shards": names}))
    return directory


class CachedActivations(ArraySource):
    """Activations cached as `.npy` shards in a directory (see `write_cached_activations`)."""

    def __init__(self, directory: str | os.PathLike, *, key: Any = None):
        directory = Path(directory)
        meta = directory / "meta.json"
        if not meta.is_file():
            raise CachedActivationsNotFoundError(
                f"{directory} is not a cached-activations directory (no meta.json)"
            )
        try:
            names = json.loads(meta.read_text())["shards"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ActivationSourceError(f"{meta} must be JSON with a list 'shards'") from None
        arrays = []
        for name in names:
            path = directory / name
            if not path.is_file():
                raise CachedActivationsNotFoundError(f"shard {path} listed in {meta} is missing")
            arrays.append(np.load(path, mmap_mode="r"))
        if len({a.shape[1:] for a in arrays}) != 1:
            raise ActivationSourceError(f"the shards in {directory} have different widths")
        super().__init__(_Shards(arrays), key=key)


class ModelActivations:
    """Activations of a `jaxlens` model at one site, streamed through a shuffle buffer.

    Args:
        params: the model's params.
        model_config: its `jaxlens.ModelConfig`.
        tokens: `Int[S, T]` token windows (`sae.tokens.load_tokens`).
        site: hook site (`resid_post`, `resid_pre`, ...).
        layers: one layer (batches `[B, D]`), a sequence of layers or `"all"` (every layer of
            the model; batches `[L, B, D]`), all captured in the same forward.
        sequences_per_forward: windows per model forward.
        buffer_tokens: tokens held in the shuffle buffer (half leave after each shuffle).
        skip_positions: leading positions of every window left out (1 drops BOS, whose
            activations are outliers).
        key: seed of the window order and the buffer shuffles.
    """

    def __init__(
        self,
        params: Any,
        model_config: Any,
        tokens: np.ndarray,
        *,
        site: str = "resid_post",
        layers: int | Sequence[int] | str = 0,
        sequences_per_forward: int = 8,
        buffer_tokens: int = 1 << 14,
        skip_positions: int = 1,
        key: Any = None,
    ):
        import jaxlens

        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
            raise ActivationSourceError(
                f"tokens must be ints [S, T]; got {tokens.dtype} {tokens.shape}"
            )
        if not 0 <= skip_positions < tokens.shape[1]:
            raise ActivationSourceError(
                f"skip_positions must be in [0, T={tokens.shape[1]}); got {skip_positions}"
            )
        if isinstance(layers, str):
            if layers != "all":
                raise ActivationSourceError(f"layers must be an int, ints or 'all'; got {layers!r}")
            layers = range(model_config.n_layers)
        self.stacked = not isinstance(layers, int)
        self.layers = tuple(layers) if self.stacked else (layers,)
        bad = [la for la in self.layers if not 0 <= la < model_config.n_layers]
        if bad:
            raise ActivationSourceError(
                f"layers {bad} are outside [0, n_layers={model_config.n_layers})"
            )
        self.n_layers = len(self.layers)
        self.params, self.tokens, self.site = params, tokens, site
        self.sequences_per_forward = min(sequences_per_forward, tokens.shape[0])
        self.buffer_tokens = buffer_tokens
        self.skip = skip_positions
        self.seed = _seed(key)
        capture = jaxlens.Capture(sites=(site,), layers=self.layers, reduce="none")

        def run(params, tok):
            out = jaxlens.forward(params, tok, config=model_config, capture=capture)
            return out.captures[site][:, :, skip_positions:]  # [L, b, T', D]

        self._forward = jax.jit(run)

    @classmethod
    def from_file(
        cls, model: Any, path: str | os.PathLike, *, seq_len: int, **kwargs: Any
    ) -> ModelActivations:
        """Activations of `model` (a `jaxlens.LoadedModel`) over the windows of a token dataset
        (`sae.load_tokens`: `.txt`, `.jsonl` or `.npy`), encoded with the model's tokenizer and
        checked against its vocabulary, BOS first and EOS between documents as its config
        says. `kwargs` go to the constructor (`site`, `layers`, `buffer_tokens`, `key`, ...)."""
        config = model.config
        tokens = load_tokens(
            path,
            seq_len=seq_len,
            tokenizer=model.tokenizer,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_ids[0] if config.eos_token_ids else None,
            vocab_size=config.vocab_size,
        )
        return cls(model.params, config, tokens, **kwargs)

    def _chunks(self) -> Iterator[np.ndarray]:
        """Activations `[L, b * T', D]` of successive forwards, windows in seeded order."""
        epoch = 0
        b = self.sequences_per_forward
        while True:
            order = np.random.default_rng(self.seed + [epoch, 1]).permutation(len(self.tokens))
            for i in range(0, len(order) - b + 1, b):
                acts = np.asarray(
                    self._forward(self.params, self.tokens[np.sort(order[i : i + b])])
                )
                yield acts.reshape(acts.shape[0], -1, acts.shape[-1]).astype(np.float32)
            epoch += 1

    def iter_batches(self, batch_size: int, start_step: int = 0) -> Iterator[np.ndarray]:
        """Shuffled batches `[B, D]` or `[L, B, D]`; `start_step` replays the stream to there."""
        capacity = max(self.buffer_tokens, 2 * batch_size)
        rng = np.random.default_rng(self.seed + [2])
        chunks = self._chunks()
        buffer = next(chunks)
        step = 0
        while True:
            while buffer.shape[1] < capacity:
                buffer = np.concatenate([buffer, next(chunks)], axis=1)
            buffer = buffer[:, rng.permutation(buffer.shape[1])]
            n_out = (buffer.shape[1] // 2 // batch_size) * batch_size
            for i in range(0, n_out, batch_size):
                if step >= start_step:
                    out = buffer[:, i : i + batch_size]
                    yield out if self.stacked else out[0]
                step += 1
            buffer = buffer[:, n_out:]
