"""Per-head and inner sites: HF `output_attentions` parity (GQA, MQA, rope scaling, q/k/v bias,
q/k norm, GPT-2) under left padding, the per-head algebra (results sum to `attn_out`), head
selection and reductions against slices of the full capture, head edits, a mesh, and every
inner site against TransformerLens's hooks on the same GPT-2 weights when it is installed."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _hf_models import left_padded_batch, make_hf_model, positions  # noqa: E402

from jaxlens import (  # noqa: E402
    Capture,
    HookSpecError,
    ModelConfig,
    Sampling,
    forward,
    generate,
    head_ablate,
    head_patch,
    init_params,
    load_hf,
)

INNER = ("q", "k", "v", "scores", "pattern", "z", "result", "mlp_post")


def close(got, want, err_msg=""):
    """Equal up to float rounding: a capture or an edit compiles a different program."""
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0, err_msg=err_msg)


def _np(tree):
    return {k: np.asarray(v) for k, v in tree.items()}


# llama3_tied: Llama 3.2 (llama3 rope scaling, MQA); qwen2: q/k/v bias, H=4 over K=1; qwen3:
# q/k norm, E != D / H, H=6 over K=2; gpt2: learned positions, fused qkv, biases everywhere.
@pytest.mark.parametrize("arch", ["llama3_tied", "qwen2", "qwen3", "gpt2"])
def test_pattern_matches_hf_and_results_sum_to_attn_out(arch, tmp_path):
    model = make_hf_model(arch)
    model.save_pretrained(tmp_path / arch)
    config, params = load_hf(tmp_path / arch)
    tokens, mask = left_padded_batch(config.vocab_size, (11, 7, 2), seed=1)
    with torch.no_grad():
        hf_out = model(
            input_ids=torch.as_tensor(tokens, dtype=torch.long),
            attention_mask=torch.as_tensor(mask, dtype=torch.long),
            position_ids=torch.as_tensor(positions(mask), dtype=torch.long),
            output_attentions=True,
        )
    hf = hf_out.attentions
    capture = Capture(sites=("pattern", "result", "attn_out", "z", "k"))
    out = forward(params, tokens, config=config, attention_mask=mask, capture=capture)
    caps = _np(out.captures)
    n, (b, t), h = config.n_layers, tokens.shape, config.n_heads
    assert caps["pattern"].shape == (n, b, h, t, t)
    real = mask.astype(bool)
    for layer in range(n):  # [B, H, T, S] -> real query rows, every key
        got = caps["pattern"][layer].transpose(0, 2, 1, 3)[real]
        want = hf[layer].numpy().transpose(0, 2, 1, 3)[real]
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)
    bias = params["layers"]["attn"]["o_proj"].get("bias")
    bias = 0.0 if bias is None else np.asarray(bias)[:, None, None]
    np.testing.assert_allclose(caps["result"].sum(3) + bias, caps["attn_out"], atol=2e-6)
    w_o = np.asarray(params["layers"]["attn"]["o_proj"]["kernel"])  # [L, H, E, D]
    np.testing.assert_allclose(
        np.einsum("lbthe,lhed->lbthd", caps["z"], w_o), caps["result"], atol=2e-6
    )
    g = config.n_heads // config.n_kv_heads  # k per query head: heads of one group agree
    np.testing.assert_array_equal(caps["k"], np.repeat(caps["k"][:, :, :, ::g], g, axis=3))
    # the per-head path computes what the fused attention does
    np.testing.assert_allclose(np.asarray(out.logits)[real], hf_out.logits.numpy()[real], atol=1e-5)


@pytest.fixture(scope="module")
def tiny():
    config = ModelConfig.tiny()  # H=4 over K=2
    tokens, mask = left_padded_batch(101, (11, 7, 2), seed=3)
    return config, init_params(jax.random.key(5), config), tokens, mask


def run(tiny, capture=None, interventions=None, tokens=None):
    config, params, toks, mask = tiny
    toks = toks if tokens is None else tokens
    out = forward(
        params, toks, config=config, attention_mask=mask, capture=capture,
        interventions=interventions,
    )  # fmt: skip
    return np.asarray(out.logits), _np(out.captures)


@pytest.fixture(scope="module")
def full(tiny):
    return run(tiny, Capture(sites=INNER + ("attn_out", "mlp_out")))


def test_selection_and_reductions_equal_slices(tiny, full):
    config, params, tokens, mask = tiny
    _, c = full
    heads, layers = (3, 1), (2, 0)
    assert c["q"].shape == (3, 3, 11, 4, 10) and c["mlp_post"].shape == (3, 3, 11, 56)
    sel = lambda site: c[site][list(layers)][:, :, :, list(heads)]  # noqa: E731
    sel_hl = lambda site: c[site][list(layers)][:, :, list(heads)]  # noqa: E731 (heads first)
    got = run(tiny, Capture(sites=INNER, layers=layers, heads=heads))[1]
    for site in ("q", "k", "v", "z", "result"):
        close(got[site], sel(site), err_msg=site)
    for site in ("scores", "pattern"):
        close(got[site], sel_hl(site), err_msg=site)
    close(got["mlp_post"], c["mlp_post"][list(layers)])

    last = run(tiny, Capture(sites=("z", "pattern"), heads=heads, reduce="last"))[1]
    close(last["z"], c["z"][:, :, -1][:, :, list(heads)])
    close(last["pattern"], c["pattern"][:, :, list(heads), -1])
    idx = np.array([[10, 4], [9, 10], [10, 10]], np.int32)
    cap = Capture(sites=("pattern",), reduce="positions", positions=jnp.asarray(idx))
    pos = run(tiny, cap)[1]["pattern"]  # [L, B, H, P, S]
    want = np.take_along_axis(c["pattern"], idx[None, :, None, :, None], axis=3)
    close(pos, want)

    w_down = np.asarray(params["layers"]["mlp"]["down_proj"]["kernel"])  # [L, F, D]
    np.testing.assert_allclose(
        np.einsum("lbtf,lfd->lbtd", c["mlp_post"], w_down), c["mlp_out"], atol=2e-6
    )
    np.testing.assert_allclose(c["pattern"].sum(-1), 1.0, atol=1e-6)


def test_head_edits(tiny, full):
    config, params, tokens, mask = tiny
    clean_logits, c = full
    capture = Capture(sites=INNER + ("attn_out", "mlp_out"))  # the fixture's program
    ref_mean = c["z"][2][:, :, 0].mean(0)  # [T, E]: over the batch's rows
    edits = head_ablate("z", 1, 2) + head_ablate("z", 2, 0, mean=ref_mean)
    _, got = run(tiny, capture, edits)
    assert np.all(got["z"][1][:, :, 2] == 0) and np.all(got["result"][1][:, :, 2] == 0)
    close(got["z"][1][:, :, :2], c["z"][1][:, :, :2])
    np.testing.assert_allclose(
        got["attn_out"][1], c["attn_out"][1] - c["result"][1][:, :, 2], atol=2e-6
    )
    close(got["z"][0], c["z"][0])  # earlier layers untouched
    close(got["z"][2][:, :, 0], np.broadcast_to(ref_mean, (3, 11, 10)))

    other = (np.roll(tokens, 3, axis=1) * mask).astype(np.int32)
    _, oc = run(tiny, capture, tokens=other)
    where = np.zeros(tokens.shape, bool)
    where[:, -1] = True
    uniform = np.where(mask[:, None, :], 1.0 / mask.sum(1)[:, None, None], 0.0)  # [B, 1, S]
    edits = (
        head_patch("result", 1, (0, 1, 2, 3), np.moveaxis(oc["result"][1], 2, 0))  # every head
        + head_patch("z", 0, 3, oc["z"][0][:, :, 3], positions=where)
        + head_patch("pattern", 2, 1, uniform)
    )
    logits, got = run(tiny, capture, edits)
    np.testing.assert_allclose(got["attn_out"][1], oc["attn_out"][1], atol=2e-6)
    close(got["z"][0][:, -1, 3], oc["z"][0][:, -1, 3])
    close(got["z"][0][:, :-1], c["z"][0][:, :-1])
    np.testing.assert_allclose(got["pattern"][2][:, 1], np.broadcast_to(uniform, (3, 11, 11)))

    from test_interventions import CompileCounter

    with CompileCounter() as counter:  # new layers, heads, values: the same program
        moved = (
            head_patch("result", 2, (3, 2, 1, 0), np.moveaxis(oc["result"][0], 2, 0))
            + head_patch("z", 1, 0, c["z"][2][:, :, 1], positions=~where)
            + head_patch("pattern", 0, 3, uniform[::-1])
        )
        again, _ = run(tiny, capture, moved)
    assert counter.count == 0 and np.abs(again - logits).max() > 1e-3


def test_head_site_errors(tiny):
    config, params, tokens, mask = tiny
    with pytest.raises(HookSpecError, match="none of .* is a head site"):
        Capture(sites=("resid_pre", "mlp_post"), heads=(0,))
    with pytest.raises(HookSpecError, match="the model has 4 heads"):
        run(tiny, Capture(sites=("z",), heads=(4,)))
    with pytest.raises(HookSpecError, match="the model has 4"):
        run(tiny, interventions=head_ablate("z", 0, 7))
    with pytest.raises(
        HookSpecError, match=r"expected to broadcast to \[B, T, X\] = \[3, 11, 40\]"
    ):
        run(tiny, interventions=head_patch("result", 0, 1, np.zeros((11, 10), np.float32)))
    with pytest.raises(HookSpecError, match="head edit at 'resid_pre'"):
        head_ablate("resid_pre", 0, 0)
    with pytest.raises(HookSpecError, match="generate's KV cache keeps kv heads"):
        generate(
            params, tokens, config=config, attention_mask=mask, key=jax.random.key(0),
            max_new_tokens=2, sampling=Sampling(temperature=0.0),
            interventions=head_ablate("k", 0, 1),
        )  # fmt: skip


def test_generate_captures_head_sites_as_a_forward_does(tiny):
    """Over the KV cache: each generated token's head sites equal an uncached forward's over
    prompt + generated tokens (keys: every cache column, prompt padding included); a head
    edit applies to the prompt, as `patch` does."""
    config, params, tokens, mask = tiny
    n, t = 4, tokens.shape[1]
    sites = ("q", "k", "scores", "pattern", "z", "result", "mlp_post")
    capture = Capture(sites=sites, layers=(2, 0), heads=(3, 0))
    edit = head_ablate("z", 1, 2, positions=mask.astype(bool))
    out = generate(
        params, tokens, config=config, attention_mask=mask, key=jax.random.key(0),
        max_new_tokens=n, sampling=Sampling(temperature=0.0), capture=capture,
        interventions=edit,
    )  # fmt: skip
    new = np.asarray(out.tokens)
    full = np.concatenate([tokens, new], axis=1)
    full_mask = np.concatenate([mask, np.ones(new.shape, mask.dtype)], axis=1)
    prompt_only = np.concatenate([mask, np.zeros(new.shape, mask.dtype)], axis=1).astype(bool)
    ref = forward(
        params, full, config=config, attention_mask=full_mask, capture=capture,
        interventions=head_ablate("z", 1, 2, positions=prompt_only),
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(ref.logits)[:, t - 1 : -1].argmax(-1), new)
    for site in sites:
        got, want = np.asarray(out.captures[site]), np.asarray(ref.captures[site])
        want = want[:, :, :, t:] if site in ("scores", "pattern") else want[:, :, t:]
        assert got.shape == want.shape, site
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=site)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_head_capture_on_a_mesh(tiny, full):
    from jaxlens import shard_params
    from jaxlens.sharding import make_mesh, put_batch

    config, params, tokens, mask = tiny
    capture = Capture(sites=("pattern", "result", "mlp_post"), heads=(1, 2))
    edit = head_ablate("z", 1, 3)
    want = run(tiny, capture, edit)
    mesh = make_mesh(data=2, tensor=4)  # heads split over `tensor`, rows over `data`
    sharded = shard_params(params, config, mesh, layout="tensor")
    out = forward(
        sharded, put_batch(tokens[:2], mesh), config=config,
        attention_mask=put_batch(mask[:2], mesh), capture=capture, interventions=edit,
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(out.logits), want[0][:2], atol=1e-5)
    for site, value in out.captures.items():
        np.testing.assert_allclose(np.asarray(value), want[1][site][:, :2], atol=1e-5)


def _transformer_lens():
    """TransformerLens 3.x (HookedTransformer): the main environment's, else the one that
    .ci/peers/sae.sh installs beside sae-lens (appended, so the main packages win)."""
    folder = os.environ.get("SAE_PEERS_DIR", "/opt/jaxlens-peers/saelens")
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.append(folder)
    return pytest.importorskip(
        "transformer_lens", reason="transformer_lens is not installed (.ci/peers/sae.sh)"
    )


def test_transformer_lens_hooks_on_gpt2(tmp_path):
    tl = _transformer_lens()
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    model = make_hf_model("gpt2")
    model.save_pretrained(tmp_path / "gpt2")
    config, params = load_hf(tmp_path / "gpt2")
    cfg = tl.HookedTransformerConfig(
        n_layers=config.n_layers, d_model=config.d_model, d_head=config.head_dim,
        n_heads=config.n_heads, d_mlp=config.d_ff, d_vocab=config.vocab_size,
        n_ctx=config.max_seq_len, act_fn="gelu_new", normalization_type="LN",
        use_attn_result=True, default_prepend_bos=False,
    )  # fmt: skip
    hooked = tl.HookedTransformer(cfg)
    hooked.load_state_dict(convert_gpt2_weights(model, cfg), strict=False)
    tokens = np.random.default_rng(2).integers(3, config.vocab_size, (2, 9)).astype(np.int32)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(torch.as_tensor(tokens, dtype=torch.long))
    sites = ("q", "k", "v", "scores", "pattern", "z", "result", "mlp_post")
    out = forward(params, tokens, config=config, capture=Capture(sites=sites))
    hooks = {s: f"attn.hook_{s}" for s in ("q", "k", "v", "pattern", "z", "result")}
    hooks.update(scores="attn.hook_attn_scores", mlp_post="mlp.hook_post")
    causal = np.tril(np.ones((9, 9), bool))  # TransformerLens writes -inf above it
    for site, hook in hooks.items():
        for layer in range(config.n_layers):
            want = cache[f"blocks.{layer}.{hook}"].numpy()
            got = np.asarray(out.captures[site][layer])
            if site == "scores":
                want, got = want[..., causal], got[..., causal]
            np.testing.assert_allclose(got, want, atol=5e-6, err_msg=f"{site} {layer}")
