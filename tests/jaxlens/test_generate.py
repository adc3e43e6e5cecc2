"""Generation: cached decoding against the uncached forward, batching, stops, sampling,
interventions and capture under the cache, chat prompts, and input errors.

The reference for every decode is `forward` over `prompt + generated tokens` with the same
left padding: its argmax and log-softmax at the positions before each new token must give the
tokens and logprobs that `generate` returned.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlens import Capture, InputError, ModelConfig, ablate, forward, init_params, steer
from jaxlens.generate import generate
from jaxlens.sampling import Sampling, SamplingError, filter_logits, sample_token

N = 6
LENGTHS = (9, 4, 6)
GREEDY = Sampling(temperature=0.0)


def left_padded(lengths, seed, vocab=101):
    rng = np.random.default_rng(seed)
    t = max(lengths)
    mask = np.arange(t)[None, :] >= (t - np.asarray(lengths))[:, None]
    return np.where(mask, rng.integers(3, vocab, (len(lengths), t)), 0).astype(np.int32), mask


@pytest.fixture(scope="module")
def model():
    config = ModelConfig.tiny()
    return config, init_params(jax.random.key(5), config)


@pytest.fixture(scope="module")
def prompts():
    return left_padded(LENGTHS, seed=1)


def reference(config, params, prompts, mask, new, interventions=None, capture=None):
    """Uncached forward over prompt + new tokens: (argmax, logprob of `new`, captures)."""
    t = prompts.shape[1]
    full = np.concatenate([prompts, new], axis=1)
    full_mask = np.concatenate([mask, np.ones(new.shape, bool)], axis=1)
    out = forward(
        params,
        full,
        config=config,
        attention_mask=full_mask,
        interventions=interventions,
        capture=capture,
    )
    logits = np.asarray(out.logits)[:, t - 1 : -1]
    logp = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), new[..., None], -1)[..., 0]
    return logits.argmax(-1), logp, out.captures


@pytest.mark.parametrize("arch", ["llama", "gpt2", "mistral_sw"])
def test_cached_greedy_equals_uncached_forward(arch, model, prompts):
    """Rope, learned positions (GPT-2), and a sliding window shorter than the sequence."""
    if arch == "llama":
        config, params = model
    else:
        config = (
            ModelConfig.tiny("mistral", sliding_window=3)
            if arch == "mistral_sw"
            else (ModelConfig.tiny(arch))
        )
        params = init_params(jax.random.key(2), config)
    tokens, mask = prompts
    out = generate(
        params,
        tokens,
        config=config,
        attention_mask=mask,
        key=jax.random.key(0),
        max_new_tokens=N,
        sampling=GREEDY,
    )
    new = np.asarray(out.tokens)
    assert new.shape == (3, N) and np.asarray(out.lengths).tolist() == [N] * 3
    argmax, logp, _ = reference(config, params, tokens, mask, new)
    np.testing.assert_array_equal(new, argmax)
    np.testing.assert_allclose(np.asarray(out.logprobs), logp, atol=2e-5)
    if arch == "llama":  # the layer scan (one copy of the weights) decodes the same
        scanned = generate(
            params,
            tokens,
            config=config,
            attention_mask=mask,
            key=jax.random.key(0),
            max_new_tokens=N,
            sampling=GREEDY,
            unroll_layers=False,
        )
        np.testing.assert_array_equal(scanned.tokens, new)
        np.testing.assert_allclose(scanned.logprobs, out.logprobs, atol=2e-5)


def test_batched_equals_one_by_one(model, prompts):
    config, params = model
    tokens, mask = prompts
    kw = dict(config=config, key=jax.random.key(0), max_new_tokens=N, sampling=GREEDY)
    batched = generate(params, tokens, attention_mask=mask, **kw)
    for row in (0, 1):  # unpadded, alone
        alone = generate(params, tokens[row : row + 1, mask[row]], **kw)
        np.testing.assert_array_equal(alone.tokens[0], batched.tokens[row])
        np.testing.assert_allclose(alone.logprobs[0], batched.logprobs[row], atol=2e-5)


def test_stop_tokens_pad_and_capture_mean(model, prompts):
    config, params = model
    tokens, mask = prompts
    kw = dict(
        config=config, attention_mask=mask, key=jax.random.key(0), max_new_tokens=N, sampling=GREEDY
    )
    free = np.asarray(generate(params, tokens, **kw).tokens)
    stop = int(free[0, 2])  # row 0 must stop after 3 tokens (earlier if it appeared before)
    capture = Capture(sites=("resid_post", "final"), layers=(2, 0), reduce="mean")
    out = generate(params, tokens, stop_tokens=(stop,), capture=capture, **kw)
    lengths = np.asarray(out.lengths)
    for row in range(3):
        hits = np.flatnonzero(free[row] == stop)
        want = hits[0] + 1 if len(hits) else N
        assert lengths[row] == want
        np.testing.assert_array_equal(out.tokens[row, :want], free[row, :want])
        assert (np.asarray(out.tokens)[row, want:] == config.pad_token_id).all()
        assert (np.asarray(out.logprobs)[row, want:] == 0).all()
    assert lengths[0] <= 3 and lengths.max() > lengths.min()
    # mean over each row's generated tokens (stop included) == span mean of the forward
    new = np.asarray(out.tokens)
    span = np.concatenate(
        [np.zeros(tokens.shape), np.arange(N)[None, :] < lengths[:, None]], axis=1
    )
    ref_capture = Capture(
        sites=("resid_post", "final"), layers=(2, 0), reduce="mean", span=jnp.asarray(span)
    )
    _, _, want = reference(config, params, tokens, mask, new, capture=ref_capture)
    for site in ("resid_post", "final"):
        np.testing.assert_allclose(out.captures[site], want[site], atol=1e-5, err_msg=site)
    # "last": each row's last generated token; "positions": indices into the generated tokens
    _, _, full = reference(config, params, tokens, mask, new, capture=Capture(sites=("mlp_out",)))
    full = np.asarray(full["mlp_out"])[:, :, tokens.shape[1] :]  # [L, B, N, D]
    rows = np.arange(3)
    last = generate(
        params,
        tokens,
        stop_tokens=(stop,),
        **kw,
        capture=Capture(sites=("mlp_out",), reduce="last"),
    )
    np.testing.assert_allclose(last.captures["mlp_out"], full[:, rows, lengths - 1], atol=1e-5)
    idx = np.stack([lengths - 1, np.zeros(3, int), np.full(3, N - 1)], axis=1).astype(np.int32)
    picked = generate(
        params,
        tokens,
        stop_tokens=(stop,),
        **kw,
        capture=Capture(sites=("mlp_out",), reduce="positions", positions=jnp.asarray(idx)),
    )
    want = np.take_along_axis(full, idx[None, :, :, None], axis=2)
    want = want * (idx < lengths[:, None])[None, :, :, None]  # after a stop: zeros
    np.testing.assert_allclose(picked.captures["mlp_out"], want, atol=1e-5)


def test_steering_under_cache_equals_uncached(model, prompts):
    """ "all" includes generated tokens; a `[B, T]` prompt mask covers the prompt only."""
    config, params = model
    tokens, mask = prompts
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 40)).astype(np.float32)
    span = np.zeros(tokens.shape, bool)
    span[:, -3:] = True
    edits = steer("resid_mid", (1, 2), v, alpha=1.5) + ablate("attn_out", 0, v[0], positions=span)
    capture = Capture(sites=("resid_post",), layers=1, reduce="none")
    out = generate(
        params,
        tokens,
        config=config,
        attention_mask=mask,
        key=jax.random.key(0),
        max_new_tokens=N,
        sampling=GREEDY,
        interventions=edits,
        capture=capture,
    )
    new = np.asarray(out.tokens)
    plain = np.asarray(
        generate(
            params,
            tokens,
            config=config,
            attention_mask=mask,
            key=jax.random.key(0),
            max_new_tokens=N,
            sampling=GREEDY,
        ).tokens
    )
    assert (new != plain).any()  # the steering changes what is generated
    compiles = []
    listener = lambda event, _, **kw: compiles.append(event)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:  # new steering values, layers and masks reuse the compiled program
        other = steer("resid_mid", (0, 2), v[::-1], alpha=-0.5) + ablate(
            "attn_out", 1, v[1], positions=~span
        )
        generate(
            params,
            tokens,
            config=config,
            attention_mask=mask,
            key=jax.random.key(1),
            max_new_tokens=N,
            sampling=GREEDY,
            interventions=other,
            capture=capture,
        )
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert "/jax/core/compile/backend_compile_duration" not in compiles
    full_span = np.concatenate([span, np.zeros(new.shape, bool)], axis=1)
    edits_full = steer("resid_mid", (1, 2), v, alpha=1.5) + ablate(
        "attn_out", 0, v[0], positions=full_span
    )
    argmax, logp, caps = reference(
        config, params, tokens, mask, new, edits_full, Capture(sites=("resid_post",), layers=1)
    )
    np.testing.assert_array_equal(new, argmax)
    np.testing.assert_allclose(out.logprobs, logp, atol=2e-5)
    t = tokens.shape[1]  # "none" capture over generated tokens: the forward's new positions
    np.testing.assert_allclose(
        out.captures["resid_post"], np.asarray(caps["resid_post"])[:, :, t:], atol=1e-5
    )


def test_sampling_filters_against_numpy():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 29)).astype(np.float32) * 2
    s = Sampling(temperature=0.7, top_k=9, top_p=0.6)
    got = np.asarray(filter_logits(jnp.asarray(logits), s))
    for row in range(4):
        z = logits[row] / 0.7
        order = np.argsort(-z)
        kept = order[:9]
        p = np.exp(z[kept] - z[kept].max())
        p /= p.sum()
        n_keep = int(np.searchsorted(np.cumsum(p), 0.6) + 1)  # smallest prefix with mass >= p
        want = set(kept[:n_keep].tolist())
        assert set(np.flatnonzero(np.isfinite(got[row])).tolist()) == want
        np.testing.assert_allclose(got[row][list(want)], z[list(want)], rtol=1e-6)


def test_sampling_follows_the_distribution():
    logits = jnp.asarray(np.random.default_rng(4).normal(size=(1, 7)), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 20000)
    draw = jax.vmap(lambda k: sample_token(logits, k, Sampling(temperature=1.3))[0][0])
    freq = np.bincount(np.asarray(draw(keys)), minlength=7) / len(keys)
    want = np.asarray(jax.nn.softmax(logits[0] / 1.3))
    np.testing.assert_allclose(freq, want, atol=0.015)
    _, logprob = sample_token(logits, keys[0], Sampling(temperature=1.3))
    assert np.isclose(
        np.exp(float(logprob[0])),
        np.asarray(jax.nn.softmax(logits[0]))[
            int(sample_token(logits, keys[0], Sampling(temperature=1.3))[0][0])
        ],
        rtol=1e-5,
    )


def test_generate_sampling_respects_top_k(model, prompts):
    config, params = model
    tokens, mask = prompts
    out = generate(
        params,
        tokens,
        config=config,
        attention_mask=mask,
        key=jax.random.key(9),
        max_new_tokens=N,
        sampling=Sampling(temperature=1.5, top_k=3),
    )
    new = np.asarray(out.tokens)
    t = tokens.shape[1]
    full = np.concatenate([tokens, new], 1)
    logits = np.asarray(
        forward(
            params,
            full,
            config=config,
            attention_mask=np.concatenate([mask, np.ones_like(new, bool)], 1),
        ).logits
    )[:, t - 1 : -1]
    top3 = np.argsort(-logits, axis=-1)[..., :3]
    assert (top3 == new[..., None]).any(-1).all()
    assert (new != logits.argmax(-1)).any()  # it does sample
    logp = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), new[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.logprobs, logp, atol=2e-5)


def test_generate_errors(model, prompts):
    config, params = model
    tokens, mask = prompts
    kw = dict(config=config, key=jax.random.key(0))
    with pytest.raises(InputError, match="not left padded"):
        generate(params, tokens, attention_mask=mask[:, ::-1], max_new_tokens=2, **kw)
    with pytest.raises(InputError, match="no real token"):
        generate(params, tokens, attention_mask=np.zeros_like(mask), max_new_tokens=2, **kw)
    with pytest.raises(InputError, match="max_new_tokens=0"):
        generate(params, tokens, attention_mask=mask, max_new_tokens=0, **kw)
    with pytest.raises(InputError, match="stop_tokens \\[101\\]"):
        generate(params, tokens, attention_mask=mask, max_new_tokens=2, stop_tokens=(101,), **kw)
    with pytest.raises(InputError, match="max_seq_len=128"):
        gpt2 = ModelConfig.tiny("gpt2")
        generate(
            init_params(jax.random.key(0), gpt2),
            tokens,
            config=gpt2,
            key=jax.random.key(0),
            max_new_tokens=120,
        )
    with pytest.raises(SamplingError, match="top_p=1.5"):
        Sampling(top_p=1.5)
    with pytest.raises(SamplingError, match="temperature=-1"):
        Sampling(temperature=-1)


def _chat_tokenizer():
    """A word-level HF tokenizer with a chat template, built in memory (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|system|>", "<|assistant|>"]
    words += [f"w{i}" for i in range(101 - len(words))]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        chat_template=template,
    )


def test_chat_batch_left_pads_rendered_prompts(model):
    from jaxlens.prompts import PromptError, chat_batch, decode, messages

    tok = _chat_tokenizer()
    convs = [messages("w5 w6 w7", system="w9"), messages("w8"), messages("w10 w11")]
    batch = chat_batch(tok, convs, multiple_of=4)
    rendered = [
        tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs
    ]
    ids = [tok(r, add_special_tokens=False)["input_ids"] for r in rendered]
    t = batch.tokens.shape[1]
    assert t % 4 == 0 and t >= max(map(len, ids))
    for row, want in enumerate(ids):
        assert batch.lengths[row] == len(want)
        assert batch.tokens[row, t - len(want) :].tolist() == want
        assert batch.tokens[row, -1] == tok.convert_tokens_to_ids("<|assistant|>")
        assert (batch.tokens[row, : t - len(want)] == tok.pad_token_id).all()
        assert batch.attention_mask[row].tolist() == [0] * (t - len(want)) + [1] * len(want)
    config, params = model
    out = generate(
        params,
        batch.tokens,
        attention_mask=batch.attention_mask,
        config=config,
        key=jax.random.key(0),
        max_new_tokens=3,
        sampling=GREEDY,
        stop_tokens=(2,),
    )
    texts = decode(tok, out, skip_special_tokens=False)
    for row, text in enumerate(texts):
        n = int(out.lengths[row])
        assert text == tok.decode(np.asarray(out.tokens)[row, :n].tolist())
    with pytest.raises(PromptError, match="non-empty list"):
        chat_batch(tok, [])
    with pytest.raises(PromptError, match="shorter than the longest"):
        chat_batch(tok, convs, length=2)
