"""The PPO learner: loss against a naive per-token reference, gradient against finite
differences, and micro-batch accumulation against one big batch."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlens
from rl.selfplay import learner
from rl.selfplay.learner import PPOConfig

CONFIG = jaxlens.ModelConfig.tiny()


@pytest.fixture(scope="module")
def setup():
    params = jaxlens.init_params(jax.random.key(3), CONFIG)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 101, n).astype(np.int32) for n in (5, 9, 3, 7)]
    responses = [rng.integers(3, 101, n).astype(np.int32) for n in (4, 2, 6, 3)]
    adv = np.array([1.0, -0.5, 0.25, -1.5], np.float32)
    # old logprobs: the current ones plus noise, so that some ratios leave [0.8, 1.2]
    old = []
    for p, r in zip(prompts, responses, strict=True):
        lp = _naive_logprobs(params, p, r)
        old.append((lp + rng.normal(0, 0.3, len(r))).astype(np.float32))
    return params, prompts, responses, adv, old


def _naive_logprobs(params, prompt, response):
    """log p(response_i | prompt, response_<i), one unpadded sequence at a time."""
    seq = np.concatenate([prompt, response])[None]
    logits = np.asarray(jaxlens.forward(params, seq, config=CONFIG).logits[0], np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    pos = np.arange(len(prompt) - 1, len(seq[0]) - 1)
    return logits[pos, seq[0, pos + 1]] - logz[pos]


def _naive_token_losses(params, prompt, response, adv, old, ppo, ref=None):
    lp = _naive_logprobs(params, prompt, response)
    out = []
    for t in range(len(response)):
        ratio = np.exp(lp[t] - old[t])
        clipped = min(max(ratio, 1 - ppo.clip), 1 + ppo.clip)
        loss = -min(ratio * adv, clipped * adv)
        if ppo.kl_coef:
            d = ref[t] - lp[t]
            loss += ppo.kl_coef * (np.exp(d) - d - 1)
        out.append(loss)
    return out


def _naive_loss(params, prompts, responses, adv, old, ppo, ref=None):
    """token_mean: all token losses / their count; batch_constant: their sum / constant;
    constant (SPIRAL, oat's masked_sum with
    constant_normalizer): each sequence's token-loss sum / constant, averaged over sequences."""
    per_seq = [
        _naive_token_losses(params, p, r, adv[i], old[i], ppo, None if ref is None else ref[i])
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True))
    ]
    if ppo.normalize == "constant":
        return float(np.mean([sum(x) / ppo.constant for x in per_seq]))
    if ppo.normalize == "batch_constant":
        return sum(sum(x) for x in per_seq) / ppo.constant
    return sum(sum(x) for x in per_seq) / sum(len(x) for x in per_seq)


@pytest.mark.parametrize("normalize", ["constant", "token_mean", "batch_constant"])
def test_loss_equals_naive_per_token_reference(setup, normalize):
    params, prompts, responses, adv, old = setup
    ppo = PPOConfig(normalize=normalize, micro_batch=2)
    batch = learner.pack(prompts, responses, old, adv, micro_batch=2, multiple_of=8)
    got = float(
        learner.batch_loss(params, jax.tree.map(jnp.asarray, batch), config=CONFIG, ppo=ppo)
    )
    want = _naive_loss(params, prompts, responses, adv, old, ppo)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-7)


def test_constant_loss_and_gradient_equal_per_sequence_mean_with_micro_batches(setup):
    """SPIRAL's aggregation on sequences of different lengths, two micro-batches of three (the
    second holding two padding rows): the loss and its gradient equal the naive per-sequence
    mean (a whole-batch token sum / 4096 would be 4x larger)."""
    params, prompts, responses, adv, old = setup
    ppo = PPOConfig(normalize="constant", micro_batch=3)
    batch = jax.tree.map(
        jnp.asarray,
        learner.pack(prompts, responses, old, adv, micro_batch=3, rows=6, multiple_of=8),
    )
    assert batch.tokens.shape[:2] == (2, 3) and int(batch.mask[1].max(-1).sum()) == 1
    loss = jax.jit(
        jax.value_and_grad(lambda p: learner.batch_loss(p, batch, config=CONFIG, ppo=ppo))
    )
    got, grads = loss(params)

    def reference(p):  # per sequence, unpadded, in jax: sum / constant, then the mean
        total = 0.0
        for pr, r, a, o in zip(prompts, responses, adv, old, strict=True):
            seq = jnp.asarray(np.concatenate([pr, r]))[None]
            logits = jaxlens.forward(p, seq, config=CONFIG).logits[0]
            logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
            pos = np.arange(len(pr) - 1, seq.shape[1] - 1)
            lp = logp[pos, seq[0, pos + 1]]
            loss, _ = learner.token_losses(lp, jnp.asarray(o), jnp.asarray(o), jnp.float32(a), ppo)
            total = total + jnp.sum(loss) / ppo.constant
        return total / len(prompts)

    want, want_grads = jax.jit(jax.value_and_grad(reference))(params)
    whole = float(want) * len(prompts)  # "batch_constant": the batch's token sum / 4096
    assert float(got) == pytest.approx(float(want), rel=1e-4)
    assert abs(whole - float(got)) > 1e-3 * abs(whole)
    for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-3, atol=1e-9)


def test_response_window_equals_full_width(setup):
    """The loss and gradient on the response window equal those with every position scored."""
    params, prompts, responses, adv, old = setup
    ppo = PPOConfig(normalize="token_mean", micro_batch=2)
    batch = jax.tree.map(
        jnp.asarray, learner.pack(prompts, responses, old, adv, micro_batch=2, multiple_of=8)
    )
    full = batch.replace(response_width=None)
    assert batch.response_width < batch.tokens.shape[-1] - 1
    value_grad = jax.value_and_grad(lambda p, b: learner.batch_loss(p, b, config=CONFIG, ppo=ppo))
    (a, ga), (b, gb) = value_grad(params, batch), value_grad(params, full)
    assert float(a) == pytest.approx(float(b), rel=1e-5)
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-7)


def test_kl_term_equals_naive_reference(setup):
    params, prompts, responses, adv, old = setup
    ppo = PPOConfig(normalize="token_mean", kl_coef=0.3, micro_batch=4)
    ref = [o - 0.2 for o in old]
    batch = learner.pack(prompts, responses, old, adv, micro_batch=4, multiple_of=8)
    ref_batch = learner.pack(prompts, responses, ref, adv, micro_batch=4, multiple_of=8)
    batch = batch.replace(ref_logprobs=ref_batch.old_logprobs)
    got = float(
        learner.batch_loss(params, jax.tree.map(jnp.asarray, batch), config=CONFIG, ppo=ppo)
    )
    assert got == pytest.approx(
        _naive_loss(params, prompts, responses, adv, old, ppo, ref), rel=1e-4
    )


def test_gradient_matches_finite_differences(setup):
    params, prompts, responses, adv, old = setup
    ppo = PPOConfig(normalize="token_mean", micro_batch=4)
    batch = jax.tree.map(
        jnp.asarray, learner.pack(prompts, responses, old, adv, micro_batch=4, multiple_of=8)
    )
    loss = lambda p: learner.batch_loss(p, batch, config=CONFIG, ppo=ppo)
    grads = jax.grad(loss)(params)
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(1)
    direction = jax.tree.unflatten(
        tree, [rng.normal(size=x.shape).astype(np.float32) for x in leaves]
    )
    h = 1e-3
    plus = jax.tree.map(lambda p, v: p + h * v, params, direction)
    minus = jax.tree.map(lambda p, v: p - h * v, params, direction)
    fd = (float(loss(plus)) - float(loss(minus))) / (2 * h)
    analytic = sum(
        float(jnp.vdot(g, v))
        for g, v in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    )
    assert abs(analytic) > 1e-4
    assert fd == pytest.approx(analytic, rel=2e-2)


def test_micro_batch_accumulation_equals_one_batch(setup):
    params, prompts, responses, adv, old = setup
    out = []
    for micro in (1, 4):
        ppo = PPOConfig(lr=1e-3, normalize="token_mean", micro_batch=micro, epochs=2)
        batch = learner.pack(prompts, responses, old, adv, micro_batch=micro, multiple_of=8)
        state = learner.init_state(params, ppo)
        state, metrics = learner.update(
            state, jax.tree.map(jnp.asarray, batch), config=CONFIG, ppo=ppo
        )
        out.append((state.params, metrics))
    for a, b in zip(jax.tree.leaves(out[0][0]), jax.tree.leaves(out[1][0]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)  # ~1% of a step
    assert float(out[0][1]["loss_0"]) == pytest.approx(float(out[1][1]["loss_0"]), rel=1e-5)
    changed = [
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(out[0][0]), jax.tree.leaves(params), strict=True)
    ]
    assert any(changed)


def test_bf16_option_keeps_fp32_master_params(setup):
    params, prompts, responses, adv, old = setup
    ppo = PPOConfig(lr=1e-3, normalize="token_mean", micro_batch=4, param_dtype="bfloat16")
    batch = learner.pack(prompts, responses, old, adv, micro_batch=4, multiple_of=8)
    state, _ = learner.update(
        learner.init_state(params, ppo), jax.tree.map(jnp.asarray, batch), config=CONFIG, ppo=ppo
    )
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert all(
        x.dtype == jnp.bfloat16 for x in jax.tree.leaves(learner.compute_params(state.params, ppo))
    )


def test_bad_config():
    with pytest.raises(ValueError, match="normalize"):
        PPOConfig(normalize="sum")
    with pytest.raises(ValueError, match="epochs"):
        dataclasses.replace(PPOConfig(), epochs=0)
