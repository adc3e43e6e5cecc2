"""The language-model policy: prompts in, sampled replies (tokens, logprobs, text) out.

`ModelPolicy(config, tokenizer, ...)` (or `ModelPolicy.of(jaxlens.load_model(path), ...)`)
holds what does not change during training (config, tokenizer, generation settings, mesh);
params are passed to every call, so the learner's latest params (already on device, sharded as
the learner keeps them) serve generation with no host round trip. A prompt is the user message
`rl.text.render(...)` wrapped by the tokenizer's chat template with the assistant header;
generation stops at the core's stop ids (`jaxlens.stop_ids`: `<|im_end|>`, the eos), prompts
are left-padded with `jaxlens.hf.tokenizer_pad_id` and placed by `jaxlens.sharding.put_batch`.

Shapes are fixed so that `jaxlens.generate` compiles once per prompt-width bucket: the batch is
padded to `rows` with copies of its first prompt, and prompt width is rounded up to
`prompt_multiple`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

import jaxlens
from jaxlens.hf import tokenizer_pad_id
from jaxlens.sharding import put_batch


class PolicyError(ValueError):
    """Bad generation settings, or a tokenizer the policy cannot use."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """How replies are sampled.

    Attributes:
      max_new_tokens: reply length cap in tokens (SPIRAL: 4096; the built-in model needs ~60).
      temperature: sampling temperature (SPIRAL's training: 1.0; 0 is greedy).
      top_k: keep the `top_k` most likely tokens (None: all; SPIRAL: all).
      top_p: nucleus sampling threshold (None: off; SPIRAL's training: off, its evaluation 0.95).
      prompt_multiple: prompt widths are rounded up to a multiple of this (fewer compiles).
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    prompt_multiple: int = 64

    def __post_init__(self):
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise PolicyError(f"max_new_tokens={self.max_new_tokens!r}: expected an int >= 1")
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise PolicyError(f"temperature={self.temperature!r}: expected a float >= 0")
        if not isinstance(self.prompt_multiple, int) or self.prompt_multiple < 1:
            raise PolicyError(f"prompt_multiple={self.prompt_multiple!r}: expected an int >= 1")
        try:
            _ = self.sampling  # the core validates top_k / top_p
        except ValueError as e:
            raise PolicyError(f"GenerationConfig top_k/top_p: {e}") from e

    @property
    def sampling(self) -> jaxlens.Sampling:
        """The core's sampling settings of these fields."""
        return jaxlens.Sampling(
            temperature=float(self.temperature), top_k=self.top_k, top_p=self.top_p
        )


class Replies(NamedTuple):
    """One generated reply per prompt."""

    texts: list[str]
    tokens: list[np.ndarray]  # int32 [n_b]: generated ids, stop token included
    logprobs: list[np.ndarray]  # float32 [n_b]: the sampling policy's log-probabilities
    seconds: float  # wall time of the generate call


class ModelPolicy:
    """A causal LM playing the games through its chat template (see the module docstring)."""

    def __init__(
        self,
        config: jaxlens.ModelConfig,
        tokenizer: Any,
        generation: GenerationConfig = GenerationConfig(),  # noqa: B008 - frozen
        *,
        mesh: Any = None,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.generation = generation
        self.mesh = mesh
        self.stop_tokens = jaxlens.stop_ids(tokenizer, config)
        self.pad_id = tokenizer_pad_id(tokenizer)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def of(
        cls,
        model: jaxlens.LoadedModel,
        generation: GenerationConfig = GenerationConfig(),  # noqa: B008 - frozen
    ) -> ModelPolicy:
        """The policy of a loaded model (`jaxlens.load_model`): its config, tokenizer, mesh."""
        return cls(model.config, model.tokenizer, generation, mesh=model.mesh)

    def with_sampling(self, sampling: jaxlens.Sampling | None) -> ModelPolicy:
        """This policy sampling with `sampling`'s temperature, top-k and top-p (None: itself);
        the copy shares the prompt cache."""
        if sampling is None:
            return self
        other = copy.copy(self)
        other.generation = dataclasses.replace(
            self.generation,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
        )
        return other

    def encode(self, prompt: str) -> list[int]:
        """Chat-template ids of one user prompt, ending with the assistant header (cached)."""
        ids = self._cache.get(prompt)
        if ids is None:
            ids = jaxlens.apply_chat_template(self.tokenizer, [{"role": "user", "content": prompt}])
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[prompt] = ids
        return ids

    def prompt_batch(self, ids: Sequence[Sequence[int]], rows: int) -> tuple[np.ndarray, ...]:
        """Left-padded `tokens, mask [rows, T]` (filler rows repeat the first prompt)."""
        if not ids or len(ids) > rows:
            raise PolicyError(f"prompt_batch: {len(ids)} prompts for {rows} rows")
        ids = list(ids) + [ids[0]] * (rows - len(ids))
        m = self.generation.prompt_multiple
        width = -(-max(len(s) for s in ids) // m) * m
        limit = self.config.max_seq_len - self.generation.max_new_tokens
        if width > limit:
            width = max(max(len(s) for s in ids), 1)
            if width > limit:
                raise PolicyError(
                    f"a prompt of {width} tokens plus max_new_tokens="
                    f"{self.generation.max_new_tokens} exceeds max_seq_len="
                    f"{self.config.max_seq_len}"
                )
        return jaxlens.left_pad(ids, self.pad_id, width)

    def generate_ids(
        self, params: Any, ids: Sequence[Sequence[int]], key: jax.Array, *, rows: int | None = None
    ) -> Replies:
        """Sample one reply per id list; `rows` fixes the batch size (default: len(ids))."""
        n = len(ids)
        tokens, mask = self.prompt_batch(ids, rows or n)
        start = time.perf_counter()
        out = jaxlens.generate(
            params,
            put_batch(tokens, self.mesh),
            attention_mask=put_batch(mask, self.mesh),
            config=self.config,
            key=key,
            max_new_tokens=self.generation.max_new_tokens,
            sampling=self.generation.sampling,
            stop_tokens=self.stop_tokens,
        )
        gen, lengths, logp = jax.device_get((out.tokens, out.lengths, out.logprobs))
        seconds = time.perf_counter() - start
        toks = [np.asarray(gen[b, : lengths[b]], np.int32) for b in range(n)]
        lps = [np.asarray(logp[b, : lengths[b]], np.float32) for b in range(n)]
        stops = set(self.stop_tokens)
        texts = [self.tokenizer.decode([t for t in row.tolist() if t not in stops]) for row in toks]
        return Replies(texts, toks, lps, seconds)

    def generate(
        self, params: Any, prompts: Sequence[str], key: jax.Array, *, rows: int | None = None
    ) -> Replies:
        """`generate_ids` on user prompts (chat template applied)."""
        return self.generate_ids(params, [self.encode(p) for p in prompts], key, rows=rows)
