"""Activation sampling throughput: jaxlens vs HF transformers, same model, same prompts.

    python3 scripts/bench_personality.py --quick

The work is the study's activation sampling: persona prompts (self-description system prompt +
instruction) through the model, every layer's residual stream at three positions (last prompt
token, mean over the prompt, mean over generated tokens), greedy generation of N tokens.

- ours: `jaxlens.personality.runtime.prompt_captures` (one jitted pass, last + mean) and
  `jaxlens.generate(..., capture=Capture("resid_post", reduce="mean"))`.
- peer: `transformers` `generate(output_hidden_states=True, return_dict_in_generate=True)`,
  whose first step returns every layer's hidden states over the prompt and each later step the
  new token's; the same three reductions in torch.

The model is `jaxlens.BUILTIN_MODEL` when it exists, else a small random Llama (6 layers,
d_model 256, written with `jaxlens.save_hf`, tokenizer from `train_tokenizer`). Both sides run
fp32 on the CPU; the mean-over-prompt activations of the two are checked to agree. Prints
`RESULT personality_sampling ours=<prompts/s> peer=<prompts/s> ...`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _bench  # noqa: E402

import jaxlens  # noqa: E402
import jaxlens.personality as P  # noqa: E402
from jaxlens.personality import formats, runtime  # noqa: E402


def tiny_model(path: Path) -> Path:
    import jax

    from jaxlens.builtin import builtin_config
    from jaxlens.hf import train_tokenizer

    personas = P.train_personas(P.make_personas(300, seed=0))
    convs = list(itertools.islice(P.persona_conversations(personas, seed=0), 400))
    tok = train_tokenizer([m["content"] for c in convs for m in c], vocab_size=1024, path=path)
    special = {
        "bos": tok.bos_token_id,
        "eos": [tok.convert_tokens_to_ids("<|im_end|>")],
        "pad": tok.pad_token_id,
    }
    config = builtin_config(vocab_size=len(tok), special=special)
    jaxlens.save_hf(path, config, jaxlens.init_params(jax.random.key(0), config))
    return path


def prompts(n: int) -> list[list[dict]]:
    roster = P.bundled_roster()
    out = []
    for k in range(n):
        c = roster[k % len(roster)]
        answered = [
            (it, P.expected_answer(c.profile[P.TRAITS.index(it.trait)], it.keyed))
            for it in P.IPIP50[:10]
        ]
        system = formats.sampling_system(formats.self_description(answered))
        out.append(
            [
                {"role": "system", "content": system},
                {"role": "user", "content": P.INSTRUCTIONS[k % 10]},
            ]
        )
    return out


def ours(model, batches, n_new):
    capture = jaxlens.Capture(("resid_post",), reduce="mean")
    out = []
    for b in batches:
        last, mean = runtime.prompt_captures(model, b)
        gen = runtime.generate(model, b, max_new_tokens=n_new, capture=capture)
        out.append((last, mean, np.asarray(gen.captures["resid_post"])))
    return out


def peer(hf, batches, n_new, eos, pad):
    import torch

    out = []
    with torch.no_grad():
        for b in batches:
            ids, mask = (
                torch.tensor(b.tokens, dtype=torch.long),
                torch.tensor(b.mask, dtype=torch.long),
            )
            g = hf.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=n_new,
                do_sample=False,
                output_hidden_states=True,
                return_dict_in_generate=True,
                eos_token_id=eos,
                pad_token_id=pad,
            )
            prompt = torch.stack(g.hidden_states[0][1:])  # [L, B, T, D] (after each layer)
            m = mask[None, :, :, None].float()
            last = prompt[:, :, -1]
            mean = (prompt * m).sum(2) / m.sum(2)
            steps = [
                torch.stack(h[1:])[:, :, -1] for h in g.hidden_states[1:]
            ]  # new tokens' states
            gen = torch.stack(steps, 2).mean(2) if steps else last * 0
            out.append((last.numpy(), mean.numpy(), gen.numpy()))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    _bench.add_run_args(p, "bench_personality")
    p.add_argument("--model", type=Path, default=None, help="HF dir (default: built-in or tiny)")
    args = p.parse_args(argv)
    n_prompts, batch, n_new, rounds = (16, 8, 16, 2) if args.quick else (64, 16, 32, 3)
    run = _bench.open_run("bench_personality", args)
    model_dir = args.model or (
        jaxlens.BUILTIN_MODEL if Path(jaxlens.BUILTIN_MODEL).is_dir() else None
    )
    tmp = None
    if model_dir is None:
        tmp = tempfile.TemporaryDirectory()
        model_dir = tiny_model(Path(tmp.name))
    model = jaxlens.load_model(model_dir, dtype="float32")
    batches = list(
        runtime.batches(model.tokenizer, prompts(n_prompts), batch_size=batch, bucket=32)
    )
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    eos = list(model.stop_tokens)
    a, b = ours(model, batches[:1], n_new), peer(hf, batches[:1], n_new, eos, model.pad_id)
    # HF's last hidden state is after the final norm: compare the layers before it
    diff = float(np.abs(a[0][1][:-1] - b[0][1][:-1]).max() / (np.abs(b[0][1][:-1]).max() + 1e-9))
    times = _bench.interleaved_seconds(
        {
            "ours": lambda: ours(model, batches, n_new),
            "peer": lambda: peer(hf, batches, n_new, eos, model.pad_id),
        },
        rounds,
    )
    res = [
        _bench.Result(
            "personality_sampling",
            n_prompts / times["ours"],
            n_prompts / times["peer"],
            "prompts/s",
        )
    ]
    extra = {"model": str(model_dir), "prompts": n_prompts, "batch": batch, "new_tokens": n_new,
             "prompt_mean_rel_diff": diff, "seconds": times}  # fmt: skip
    print(f"prompt-mean activations, max relative difference ours vs HF: {diff:.2e}")
    _bench.finish(run, res, "Activation sampling: jaxlens vs transformers", extra)


if __name__ == "__main__":
    main()
