"""`model_apply`, `token_logprobs`, `next_token_loss` and `fit_lm` on a tiny random model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlens
from jaxlens import next_token_loss, token_logprobs
from jaxlens.builtin.training import TrainingError, fit_lm

CONFIG = jaxlens.ModelConfig.tiny()


@pytest.fixture(scope="module")
def params():
    return jaxlens.init_params(jax.random.key(0), CONFIG)


def test_token_logprobs_match_forward_under_left_padding(params):
    tokens = np.random.RandomState(0).randint(3, CONFIG.vocab_size, (3, 11))
    mask = np.ones_like(tokens)
    mask[1, :4] = 0
    got = token_logprobs(
        params, jnp.asarray(tokens), config=CONFIG, attention_mask=jnp.asarray(mask)
    )
    logits = jaxlens.forward(params, tokens, config=CONFIG, attention_mask=mask).logits
    want = np.take_along_axis(
        np.asarray(jax.nn.log_softmax(logits[:, :-1])), tokens[:, 1:, None], axis=-1
    )[..., 0]
    want = np.where(mask[:, 1:] == 1, want, 0.0)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    assert np.all(np.asarray(got)[1, :3] == 0.0)
    # only the last k targets: the same values, the projection on k + 1 positions
    for k in (1, 4, 10):
        window = token_logprobs(
            params, jnp.asarray(tokens), config=CONFIG, attention_mask=jnp.asarray(mask), last=k
        )
        assert window.shape == (3, k)
        np.testing.assert_allclose(np.asarray(window), want[:, -k:], atol=1e-5)
    for bad in (0, 11):
        with pytest.raises(ValueError, match="last"):
            token_logprobs(params, jnp.asarray(tokens), config=CONFIG, last=bad)


def test_model_apply_is_forward_and_differentiable(params):
    """The public un-jitted function: same logits as `forward` under the caller's own jit, and
    its gradient agrees with a central finite difference of the loss."""
    tokens = np.random.RandomState(1).randint(3, CONFIG.vocab_size, (2, 9))
    mask = np.ones_like(tokens)
    mask[0, :3] = 0
    run = jax.jit(jaxlens.model_apply, static_argnames="config")
    got = run(params, tokens, config=CONFIG, attention_mask=mask).logits
    want = jaxlens.forward(params, tokens, config=CONFIG, attention_mask=mask).logits
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)

    def loss(scale):
        p = {**params, "final_norm": {"scale": scale}}
        return next_token_loss(p, tokens, config=CONFIG, attention_mask=mask)

    scale = params["final_norm"]["scale"]
    direction = jnp.asarray(np.random.RandomState(2).normal(size=scale.shape), jnp.float32)
    grad = jax.jit(jax.grad(loss))(scale)
    eps = 1e-2
    fd = (jax.jit(loss)(scale + eps * direction) - jax.jit(loss)(scale - eps * direction)) / (
        2 * eps
    )
    np.testing.assert_allclose(float(jnp.vdot(grad, direction)), float(fd), rtol=1e-2, atol=1e-5)


def test_fit_lm_learns_a_repeating_sequence(params):
    pattern = np.array([5, 9, 13, 17, 21, 25, 29])
    windows = np.stack([np.roll(np.tile(pattern, 3), -i)[:12] for i in range(7)])
    before = float(next_token_loss(params, jnp.asarray(windows), config=CONFIG))
    losses = []
    trained = fit_lm(
        params,
        windows,
        config=CONFIG,
        key=jax.random.key(1),
        steps=60,
        batch_size=4,
        lr=1e-2,
        log_every=20,
        callback=lambda step, loss: losses.append((step, loss)),
    )
    after = float(next_token_loss(trained, jnp.asarray(windows), config=CONFIG))
    assert [s for s, _ in losses] == [20, 40, 60]
    assert after < 0.2 * before, (before, after)
    # The caller's params are untouched (the jitted chunk donates only its own copy).
    assert float(next_token_loss(params, jnp.asarray(windows), config=CONFIG)) == before


def _fit(params, tokens, **overrides):
    """`fit_lm` on the tiny model: one step of two windows unless overridden."""
    kwargs = dict(config=CONFIG, key=jax.random.key(0), steps=1, batch_size=2) | overrides
    return fit_lm(params, tokens, **kwargs)


def test_fit_lm_rejects_bad_input(params):
    with pytest.raises(TrainingError, match="vocab_size"):
        _fit(params, np.full((4, 8), 500))
    with pytest.raises(TrainingError, match="batch_size"):
        _fit(params, np.ones((4, 8), int), batch_size=5)
    with pytest.raises(TrainingError, match="loss became nan"):
        _fit(params, np.ones((4, 8), int), steps=2, lr=float("nan"))


def test_masked_loss_is_the_weighted_mean_of_token_losses(params):
    from jaxlens.builtin.training import masked_loss

    tokens = np.random.RandomState(5).randint(3, CONFIG.vocab_size, (2, 8))
    weights = np.random.RandomState(6).uniform(0, 1, tokens.shape).astype(np.float32)
    weights[0, :4] = 0.0
    lp = np.asarray(token_logprobs(params, jnp.asarray(tokens), config=CONFIG))
    want = -(lp * weights[:, 1:]).sum() / weights[:, 1:].sum()
    got = masked_loss(params, jnp.asarray(tokens), jnp.asarray(weights), config=CONFIG)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    with pytest.raises(TrainingError, match="non-negative weights"):
        _fit(params, tokens, loss_mask=-weights)


def test_packed_segments_read_each_document_alone(params):
    """Documents packed end to end with `segments` get the logits each gets run alone."""
    rng = np.random.RandomState(7)
    docs = [rng.randint(3, CONFIG.vocab_size, n) for n in (5, 9, 2)]
    row = jnp.asarray(np.concatenate(docs))[None]
    segments = jnp.asarray(np.repeat(np.arange(3), [len(d) for d in docs]))[None]
    packed = jaxlens.model_apply(params, row, config=CONFIG, segments=segments).logits[0]
    start = 0
    for doc in docs:
        alone = jaxlens.model_apply(params, jnp.asarray(doc)[None], config=CONFIG).logits[0]
        np.testing.assert_allclose(packed[start : start + len(doc)], alone, atol=1e-5)
        start += len(doc)
    # without segments the later documents read the earlier ones
    unsegmented = jaxlens.model_apply(params, row, config=CONFIG).logits[0]
    assert not np.allclose(unsegmented[5:], packed[5:], atol=1e-3)


def test_fit_lm_rejects_bad_segments(params):
    tokens = np.ones((4, 8), int)
    for segments, match in [
        (np.zeros((4, 7), int), "shape"),
        (np.zeros((4, 8)), "dtype"),
        (np.tile([0, 0, 1, 1, 0, 0, 2, 2], (4, 1)), "non-decreasing"),
    ]:
        with pytest.raises(TrainingError, match=match):
            _fit(params, tokens, segments=segments)


def test_fit_lm_trains_on_the_segmented_rows(params):
    """The segments reach the loss: two documents packed into one window train exactly as the
    same two documents alone in their own windows (without segments, b would read a)."""
    rng = np.random.RandomState(8)
    a, b = rng.randint(3, CONFIG.vocab_size, (2, 6))
    packed = np.concatenate([a, b])[None]
    segments = np.repeat([[0, 1]], 6, axis=1)
    learn = np.ones(packed.shape, np.float32)
    learn[0, 6] = 0.0  # b's first token has nothing of b before it, as alone
    fit = lambda tokens, **kw: _fit(params, tokens, steps=3, lr=1e-2, **kw)
    leaves = lambda p: np.concatenate([np.ravel(x) for x in jax.tree.leaves(p)])
    with_segments = leaves(fit(packed, batch_size=1, segments=segments, loss_mask=learn))
    alone = leaves(fit(np.stack([a, b]), batch_size=2))
    np.testing.assert_allclose(with_segments, alone, atol=1e-5)
