"""Activation sources (token files, arrays, cached shards, a live model) and spliced metrics."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sae

TEXT = Path(__file__).parents[1] / "data" / "sae" / "tiny.txt"
VOCAB = 101


def byte_tokens(text: str) -> list[int]:
    """A tokenizer for the tiny model: bytes folded into ids 3..100 (0 pad, 1 BOS, 2 EOS)."""
    return [3 + b % (VOCAB - 3) for b in text.encode("utf-8")]


def test_load_tokens_text_jsonl_npy(tmp_path):
    rows = sae.load_tokens(TEXT, seq_len=17, tokenizer=byte_tokens, bos_token_id=1, eos_token_id=2)
    assert rows.dtype == np.int32 and rows.shape[1] == 17 and rows.shape[0] > 40
    assert np.all(rows[:, 0] == 1) and rows.max() < VOCAB
    docs = [d for d in TEXT.read_text().split("\n\n") if d.strip()]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": d.strip()}) for d in docs))
    same = sae.load_tokens(jsonl, seq_len=17, tokenizer=byte_tokens, bos_token_id=1, eos_token_id=2)
    np.testing.assert_array_equal(same, rows)
    np.save(tmp_path / "flat.npy", np.arange(100) % VOCAB)
    flat = sae.load_tokens(tmp_path / "flat.npy", seq_len=10, bos_token_id=1)
    np.testing.assert_array_equal(flat[1], [1] + list(range(9, 18)))
    np.save(tmp_path / "rows.npy", rows)
    np.testing.assert_array_equal(sae.load_tokens(tmp_path / "rows.npy", seq_len=9), rows[:, :9])


def test_load_tokens_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sae.load_tokens(tmp_path / "none.txt", seq_len=8, tokenizer=byte_tokens)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "no text field"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        sae.load_tokens(bad, seq_len=3, tokenizer=byte_tokens)
    with pytest.raises(ValueError, match="tokenizer"):
        sae.load_tokens(TEXT, seq_len=8)
    with pytest.raises(ValueError, match="outside"):
        sae.load_tokens(TEXT, seq_len=8, tokenizer=lambda s: list(s.encode()), vocab_size=VOCAB)
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="suffix"):
        sae.load_tokens(tmp_path / "x.csv", seq_len=8)


def test_array_source_is_seeded_and_resumable():
    data = np.random.default_rng(0).normal(size=(53, 7)).astype(np.float32)
    src = sae.ArraySource(data, key=jax.random.key(4))
    first = list(itertools.islice(src.iter_batches(8, start_step=0), 9))
    later = list(itertools.islice(src.iter_batches(8, start_step=5), 4))
    for a, b in zip(first[5:], later, strict=False):
        np.testing.assert_array_equal(a, b)
    epoch = np.concatenate(first[:6])  # 53 // 8 = 6 batches per epoch, no row twice
    assert len({r.tobytes() for r in epoch}) == 48
    assert {r.tobytes() for r in epoch} <= {r.tobytes() for r in data}
    with pytest.raises(ValueError, match="array"):
        sae.ArraySource(np.zeros(5, np.float32))


def test_cached_shards_round_trip(tmp_path):
    data = np.random.default_rng(1).normal(size=(50, 3, 5)).astype(np.float32)  # [N, L, D]
    batches = [np.swapaxes(data[i : i + 10], 0, 1) for i in range(0, 50, 10)]  # [L, B, D]
    sae.write_cached_activations(tmp_path, batches, shard_tokens=20)
    assert len(list(tmp_path.glob("acts_*.npy"))) == 3
    src = sae.CachedActivations(tmp_path, key=jax.random.key(0))
    got = np.concatenate(list(itertools.islice(src.iter_batches(10), 5)), axis=1)  # [L, 50, D]
    assert got.shape == (3, 50, 5)
    order = np.lexsort(got[0].T)
    np.testing.assert_array_equal(
        got[:, order], np.swapaxes(data, 0, 1)[:, np.lexsort(data[:, 0].T)]
    )
    (tmp_path / "acts_00001.npy").unlink()
    with pytest.raises(FileNotFoundError, match="acts_00001"):
        sae.CachedActivations(tmp_path)


jaxlens = pytest.importorskip("jaxlens", reason="the model-backed source needs jaxlens")


@pytest.fixture(scope="module")
def tiny_model():
    config = jaxlens.ModelConfig.tiny()
    params = jaxlens.init_params(jax.random.key(0), config)
    tokens = sae.load_tokens(
        TEXT, seq_len=17, tokenizer=byte_tokens, bos_token_id=1, eos_token_id=2
    )
    return config, params, tokens


def test_model_source_streams_shuffled_captures(tiny_model):
    config, params, tokens = tiny_model
    layers = (0, 2)
    src = sae.ModelActivations(
        params,
        config,
        tokens,
        site="resid_post",
        layers=layers,
        sequences_per_forward=8,
        buffer_tokens=256,
        key=jax.random.key(1),
    )
    batches = list(itertools.islice(src.iter_batches(32), 6))
    assert all(b.shape == (2, 32, config.d_model) for b in batches)
    capture = jaxlens.Capture(sites=("resid_post",), layers=layers)
    ref = np.asarray(
        jaxlens.forward(params, jnp.asarray(tokens), config=config, capture=capture).captures[
            "resid_post"
        ]
    )[:, :, 1:]
    ref = ref.reshape(2, -1, config.d_model)  # [L, S * (T - 1), D]
    lookup = {row.tobytes(): i for i, row in enumerate(np.round(ref[0], 4))}
    first = batches[0]
    idx = [lookup[row.tobytes()] for row in np.round(first[0], 4)]  # every row is a capture
    np.testing.assert_allclose(first[1], ref[1][idx], rtol=1e-4, atol=1e-4)  # layers aligned
    assert len({i // 16 for i in idx}) >= 6  # one batch mixes many sequences
    replay = next(iter(src.iter_batches(32, start_step=4)))
    np.testing.assert_array_equal(replay, batches[4])
    with pytest.raises(ValueError, match="layers"):
        sae.ModelActivations(params, config, tokens, layers=(0, 7))


def test_from_file_reads_windows_as_the_loaded_model_says(tiny_model):
    config, params, tokens = tiny_model
    model = jaxlens.LoadedModel(config, params, byte_tokens)
    src = sae.ModelActivations.from_file(model, TEXT, seq_len=17, layers=(1,), key=0)
    assert (config.bos_token_id, config.eos_token_ids[:1]) == (1, (2,))  # as `tokens` were cut
    np.testing.assert_array_equal(src.tokens, tokens)
    assert src.layers == (1,) and src.params is params
    with pytest.raises(ValueError, match="outside"):  # checked against the model's vocabulary
        sae.ModelActivations.from_file(
            jaxlens.LoadedModel(config, params, lambda t: [VOCAB] * len(t)), TEXT, seq_len=17
        )


def test_fit_every_layer_from_one_forward(tiny_model):
    config, params, tokens = tiny_model
    src = sae.ModelActivations(
        params, config, tokens, layers="all", buffer_tokens=256, key=jax.random.key(2)
    )
    assert src.layers == tuple(range(config.n_layers))
    cfg = sae.SAEConfig(d_in=config.d_model, d_sae=80, architecture="topk", k=4)
    out = sae.fit(
        src,
        cfg,
        key=jax.random.key(0),
        steps=4,
        batch_size=32,
        options=sae.FitOptions(init_sample_size=64),
    )
    assert isinstance(out, list) and len(out) == config.n_layers
    assert out[0]["W_enc"].shape == (config.d_model, 80)
    with pytest.raises(ValueError, match="'all'"):
        sae.ModelActivations(params, config, tokens, layers="every")


def test_spliced_metrics(tiny_model):
    config, params, tokens = tiny_model
    d = config.d_model
    eye = jnp.eye(d)
    exact = sae.SAEConfig(d_in=d, d_sae=2 * d, architecture="relu")
    # relu(x) - relu(-x) = x: this SAE reconstructs every activation exactly.
    identity = {
        "W_enc": jnp.concatenate([eye, -eye], axis=1),
        "b_enc": jnp.zeros(2 * d),
        "W_dec": jnp.concatenate([eye, -eye], axis=0),
        "b_dec": jnp.zeros(d),
    }
    batch = jnp.asarray(tokens[:8])
    m = sae.spliced_metrics(
        params,
        batch,
        model_config=config,
        sae_params=identity,
        sae_config=exact,
        site="resid_post",
        layer=1,
    )
    assert abs(m.ce_spliced - m.ce_clean) < 1e-4 and abs(m.kl) < 1e-5
    assert abs(m.ce_loss_recovered - 1.0) < 1e-3
    assert m.ce_zero_ablation != pytest.approx(m.ce_clean, abs=1e-3)
    noisy = sae.init(jax.random.key(3), exact)
    n = sae.spliced_metrics(
        params,
        batch,
        model_config=config,
        sae_params=noisy,
        sae_config=exact,
        site="resid_post",
        layer=1,
    )
    assert n.kl > 1e-4 and n.ce_loss_recovered < 0.999
    logits = jaxlens.forward(params, batch, config=config).logits
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    ce = -jnp.mean(jnp.take_along_axis(logp, batch[:, 1:, None], axis=-1))
    assert float(ce) == pytest.approx(m.ce_clean, rel=1e-5)
    with pytest.raises(ValueError, match="d_model"):
        sae.spliced_metrics(
            params,
            batch,
            model_config=config,
            sae_params=identity,
            sae_config=sae.SAEConfig(d_in=d + 1, d_sae=4, architecture="relu"),
            site="resid_post",
            layer=1,
        )
