"""Parity with Hugging Face transformers: tiny random checkpoints of every architecture.

Each variant of `_hf_models.VARIANTS` (llama default / llama3 rope + tied + MQA / biases,
mistral with and without a sliding window shorter than the sequence, qwen2, qwen3 with
head_dim != D/H, gpt2) is built and saved by transformers, loaded with `load_hf`, and run on a
left-padded batch; logits at real positions must match HF's (given the same position ids) to
1e-4 in fp32, and greedy decoding must emit the tokens of HF's own `generate`. `save_hf` must
give a directory transformers loads back to the same logits, also from params sharded over a
(data=2, fsdp=4) mesh.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _hf_models import VARIANTS, hf_logits, left_padded_batch, make_hf_model  # noqa: E402

import jaxlens  # noqa: E402
from jaxlens import forward, load_hf, save_hf  # noqa: E402

ATOL = 1e-4


@pytest.fixture(scope="module")
def batch():
    return left_padded_batch(vocab=101, lengths=(11, 7, 2))


@pytest.fixture(scope="module")
def hf_runs(tmp_path_factory, batch):
    """Per variant: (checkpoint dir, HF fp32 logits)."""
    root = tmp_path_factory.mktemp("hf")
    runs = {}
    for arch in VARIANTS:
        model = make_hf_model(arch)
        model.save_pretrained(root / arch)
        runs[arch] = (root / arch, hf_logits(model, *batch))
    return runs


def _ours(params, config, batch):
    tokens, mask = batch
    out = forward(params, jnp.asarray(tokens), config=config, attention_mask=jnp.asarray(mask))
    return np.asarray(out.logits, np.float32)


@pytest.mark.parametrize("arch", list(VARIANTS))
def test_logits_match_hf(arch, hf_runs, batch):
    path, want = hf_runs[arch]
    config, params = load_hf(path)
    assert config.arch == VARIANTS[arch][0]
    got = _ours(params, config, batch)
    real = batch[1].astype(bool)
    assert got.shape == want.shape
    assert np.abs(want[real]).max() > 0.5  # logits carry signal, so 1e-4 means something
    np.testing.assert_allclose(got[real], want[real], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "arch, change",
    [("llama3_tied", dict(rope_scaling=None)), ("mistral_sw", dict(sliding_window=None))],
)
def test_variant_feature_is_exercised(arch, change, hf_runs, batch):
    """Dropping the feature moves the logits well past the tolerance: the parity test sees it."""
    path, want = hf_runs[arch]
    config, params = load_hf(path)
    got = _ours(params, config.replace(**change), batch)
    real = batch[1].astype(bool)
    assert np.abs(got[real] - want[real]).max() > 100 * ATOL


@pytest.mark.parametrize("arch", list(VARIANTS))
def test_save_hf_loads_in_transformers(arch, hf_runs, batch, tmp_path):
    from transformers import AutoModelForCausalLM

    path, want = hf_runs[arch]
    config, params = load_hf(path)
    save_hf(tmp_path / "out", config, params)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", attn_implementation="eager")
    assert model.dtype == torch.float32
    got = hf_logits(model.eval(), *batch)
    real = batch[1].astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-6, rtol=0)
    config_back, _ = load_hf(tmp_path / "out")
    assert config_back == config


@pytest.mark.parametrize("arch", ["llama3_tied", "qwen3", "gpt2"])
def test_bf16_params(arch, hf_runs, batch):
    """bf16 weights and activations: about as far from fp32 HF as HF's own bf16 run."""
    path, want = hf_runs[arch]
    config, params = load_hf(path, dtype="bfloat16")
    assert config.param_dtype == "bfloat16"
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params))
    got = _ours(params, config, batch)
    from transformers import AutoModelForCausalLM

    hf16 = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16, attn_implementation="eager"
    )
    ref16 = hf_logits(hf16.eval(), *batch)
    real = batch[1].astype(bool)
    ours_err = np.abs(got[real] - want[real]).max()
    hf_err = np.abs(ref16[real] - want[real]).max()
    assert ours_err < max(3 * hf_err, 0.05), (ours_err, hf_err)
    assert ours_err < 0.25


GREEDY_STEPS = 6


@pytest.mark.parametrize("arch", list(VARIANTS))
def test_greedy_tokens_match_hf_generate(arch, hf_runs, batch):
    """Our cached greedy decoding against transformers' `generate` (greedy, fp32, same
    left-padded prompts, no stop token): the same new tokens in every row."""
    from transformers import AutoModelForCausalLM

    path, _ = hf_runs[arch]
    tokens, mask = batch
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    model.generation_config.eos_token_id = None
    with torch.no_grad():
        theirs = model.generate(
            input_ids=torch.as_tensor(tokens, dtype=torch.long),
            attention_mask=torch.as_tensor(mask, dtype=torch.long),
            do_sample=False,
            max_new_tokens=GREEDY_STEPS,
            min_new_tokens=GREEDY_STEPS,
            pad_token_id=0,
        )[:, tokens.shape[1] :].numpy()
    config, params = load_hf(path)
    ours = jaxlens.generate(
        params,
        tokens,
        config=config,
        key=jax.random.key(0),
        max_new_tokens=GREEDY_STEPS,
        attention_mask=mask,
        sampling=jaxlens.Sampling(temperature=0.0),
    )
    assert theirs.shape == (len(tokens), GREEDY_STEPS)
    np.testing.assert_array_equal(np.asarray(ours.tokens), theirs)


@pytest.mark.parametrize("arch, width", [("llama_bias", "hidden_size"), ("gpt2", "n_embd")])
def test_sharded_save_hf_loads_in_transformers(arch, width, batch, tmp_path):
    """Params spread over a (data=2, fsdp=4) mesh (d_model 48, so fsdp=4 splits it), written
    in several safetensors files, read by transformers: the original model's logits."""
    from transformers import AutoModelForCausalLM

    source = make_hf_model(arch, **{width: 48})
    want = hf_logits(source, *batch)
    source.save_pretrained(tmp_path / "in")
    mesh = jaxlens.sharding.make_mesh(data=2, fsdp=4)
    config, params = load_hf(tmp_path / "in", mesh=mesh)
    embed = params["embed"]["embedding"]
    assert embed.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
    assert embed.addressable_shards[0].data.shape[1] == 12
    save_hf(tmp_path / "out", config, params, max_shard_bytes=20_000)
    assert len(list((tmp_path / "out").glob("model-*-of-*.safetensors"))) > 1
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", attn_implementation="eager")
    got = hf_logits(model.eval(), *batch)
    real = batch[1].astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-6, rtol=0)
