"""Memory plan of the study at the paper's scale, from shapes only (`jax.eval_shape`).

`memory_plan(config, mesh_shape, batch, prompt_len, new_tokens)` estimates the bytes each
device holds while sampling one batch, without allocating anything:

- weights: `jax.eval_shape(init_params)` leaves in the compute dtype, sharded over
  `fsdp x tensor` (the data axis replicates them);
- captured prompt activations: the `[L, B, T, D]` `resid_post` buffer of the prompt pass
  (its shape from `jax.eval_shape` of `jaxlens.model_apply` with capture) plus the fp32 last /
  mean outputs, sharded over the batch axes;
- prompt-pass logits `[B, T, V]` fp32 (only the last position is read, but the model computes
  them all), and one layer's attention scores `[B, H, T, T]` fp32 (the scan keeps one live);
- KV cache `[L, B, K, T + N, E]` x2 for generation, the per-layer weight copy that
  `jaxlens.generate`'s unrolled decode makes, and the generated-token capture `[L, B, D]`.

The per-device batch is `batch / (data * fsdp)`. `LLAMA_33_70B` is the published
architecture of Llama 3.3 70B (public config values).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxlens

LLAMA_33_70B = dict(
    vocab_size=128256, d_model=8192, n_layers=80, n_heads=64, n_kv_heads=8, head_dim=128,
    d_ff=28672, max_seq_len=131072, rope_theta=500000.0, tie_embeddings=False,
    param_dtype="bfloat16", dtype="bfloat16",
)  # fmt: skip

SETTINGS = {
    "v5p-64": {"devices": 32, "hbm_gib": 95.0, "mesh": {"data": 4, "fsdp": 8, "tensor": 1}},
    "8xH100": {"devices": 8, "hbm_gib": 80.0, "mesh": {"data": 1, "fsdp": 8, "tensor": 1}},
}


def _bytes(tree) -> int:
    return int(sum(np.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def memory_plan(config, mesh: dict, *, batch: int, prompt_len: int, new_tokens: int) -> dict:
    """Bytes per device of each part (see module doc) and their total."""
    c = config
    shard_params = mesh.get("fsdp", 1) * mesh.get("tensor", 1)
    batch_shards = mesh.get("data", 1) * mesh.get("fsdp", 1)
    b_local = max(1, -(-batch // batch_shards))
    itemsize = jnp.dtype(c.dtype).itemsize
    shapes = jax.eval_shape(lambda k: jaxlens.init_params(k, c), jax.random.key(0))
    weights = _bytes(shapes) * itemsize // max(1, jnp.dtype(c.param_dtype).itemsize) // shard_params
    tokens = jax.ShapeDtypeStruct((b_local, prompt_len), jnp.int32)
    capture = jaxlens.Capture(("resid_post",), reduce="none")
    out = jax.eval_shape(
        lambda p, t: jaxlens.model_apply(p, t, config=c, capture=capture), shapes, tokens
    )
    captured = _bytes(out.captures) + 2 * c.n_layers * b_local * c.d_model * 4
    logits = _bytes(out.logits)
    scores = b_local * c.n_heads * prompt_len * prompt_len * 4
    kv = 2 * c.n_layers * b_local * c.n_kv_heads * (prompt_len + new_tokens) * c.head_dim * itemsize
    gen_capture = c.n_layers * b_local * c.d_model * 4
    parts = {
        "weights": weights,
        "prompt capture [L,B,T,D]": captured,
        "prompt logits [B,T,V]": logits,
        "attention scores (one layer)": scores,
        "kv cache": kv,
        "decode weight copy (unroll_layers)": weights,
        "generated capture": gen_capture,
    }
    return {"batch per device": b_local, **parts, "total": sum(parts.values())}


def report(
    setting: str = "v5p-64",
    *,
    prompts: int = 4060,
    prompt_len: int = 3584,
    new_tokens: int = 64,
    batch: int | None = None,
) -> str:
    """A Markdown table of the plan for one hardware setting."""
    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r}: expected one of {tuple(SETTINGS)}")
    s = SETTINGS[setting]
    config = jaxlens.ModelConfig(**LLAMA_33_70B)
    batch = batch or (s["mesh"]["data"] * s["mesh"]["fsdp"])
    plan = memory_plan(config, s["mesh"], batch=batch, prompt_len=prompt_len, new_tokens=new_tokens)
    gib = 2**30
    lines = [
        f"Llama 3.3 70B on {setting} (mesh {s['mesh']}), {prompts} prompts of {prompt_len} tokens "
        f"+ {new_tokens} generated, batch {batch} ({-(-prompts // batch)} batches)",
        "",
        "| part | GiB per device |",
        "|---|---|",
    ]
    for k, v in plan.items():
        if k != "batch per device":
            lines.append(f"| {k} | {v / gib:.2f} |")
    verdict = "fits" if plan["total"] / gib < s["hbm_gib"] else "does NOT fit"
    lines.append(f"\nper-device HBM {s['hbm_gib']} GiB: {verdict}")
    return "\n".join(lines)
