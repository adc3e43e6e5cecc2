"""End-to-end run of the foundation on a tiny random Llama, offline, in about a minute on a CPU.

1. Trains a small byte-level BPE tokenizer and a 4-layer Llama on the shipped text, writes the
   model as a HF safetensors checkpoint (`save_hf`) and loads it back (`load_hf`).
2. Captures every layer's residual stream, steers with a direction taken from it, and
   generates from text prompts with and without steering (KV cache, greedy).
3. Trains a TopK SAE on one layer's activations streamed from the model and reports its
   metrics, spliced CE-loss recovered included.
4. Plays each game with the fixed opponents and renders/parses one text turn.

Writes `runs/quickstart/` (config.json, metrics.jsonl, report.md, sae_training.png). When the
built-in default model lands this becomes its one-command quickstart.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxlens
import jaxlens.prompts
import rl.envs
import rl.opponents
import rl.text
import sae
from jaxlens.tokenizer import train_tokenizer
from jaxlens.training import fit_lm

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "sae" / "tiny.txt"


def log(run: Path, record: dict) -> None:
    print(json.dumps(record))
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def build_model(run: Path, args) -> tuple[jaxlens.ModelConfig, dict, object, np.ndarray]:
    ckpt = run / "model"
    tokenizer = train_tokenizer([CORPUS.read_text()], vocab_size=args.vocab, path=ckpt)
    config = jaxlens.ModelConfig(
        vocab_size=len(tokenizer),
        d_model=args.d_model,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        head_dim=args.d_model // 4,
        d_ff=4 * args.d_model,
        max_seq_len=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_ids=(tokenizer.eos_token_id,),
        pad_token_id=tokenizer.pad_token_id,
    )
    windows = sae.load_tokens(
        CORPUS, seq_len=32, tokenizer=tokenizer, bos_token_id=config.bos_token_id
    )
    params = fit_lm(
        jaxlens.init_params(jax.random.key(args.seed), config),
        windows,
        config=config,
        key=jax.random.key(args.seed + 1),
        steps=args.lm_steps,
        batch_size=min(16, len(windows)),
        callback=lambda step, loss: log(run, {"stage": "lm", "step": step, "loss": loss}),
    )
    jaxlens.save_hf(ckpt, config, params)
    config, loaded = jaxlens.load_hf(ckpt)
    tokenizer = jaxlens.load_tokenizer(ckpt, config=config)
    gap = np.abs(
        np.asarray(jaxlens.forward(loaded, windows[:4], config=config).logits)
        - np.asarray(jaxlens.forward(params, windows[:4], config=config).logits)
    ).max()
    log(
        run,
        {
            "stage": "checkpoint",
            "path": str(ckpt),
            "windows": len(windows),
            "max_logit_gap_after_reload": float(gap),
        },
    )
    return config, loaded, tokenizer, windows


def steer_and_generate(run: Path, config, params, tokenizer) -> None:
    starts = ["The lighthouse keeper", "In the morning the harbour"]
    prompts = jaxlens.prompts.pad_batch(
        [[config.bos_token_id] + tokenizer.encode(s) for s in starts], pad_id=config.pad_token_id
    )
    capture = jaxlens.Capture(sites=("resid_post",), reduce="mean")
    out = jaxlens.forward(
        params,
        prompts.tokens,
        config=config,
        attention_mask=prompts.attention_mask,
        capture=capture,
    )
    acts = out.captures["resid_post"]  # [L, B, D]
    direction = acts[2, 0] - acts[2, 1]
    direction = direction / jnp.linalg.norm(direction)
    steering = jaxlens.steer(
        "resid_post", layers=(1, 2), vectors=direction, alpha=0.3, norm_scaled=True
    )
    key = jax.random.key(0)
    common = dict(
        config=config,
        key=key,
        attention_mask=prompts.attention_mask,
        max_new_tokens=24,
        sampling=jaxlens.Sampling(temperature=0.0),
        stop_tokens=config.eos_token_ids,
    )
    plain = jaxlens.generate(params, prompts.tokens, **common)
    steered = jaxlens.generate(params, prompts.tokens, interventions=steering, **common)
    texts = jaxlens.prompts.decode(tokenizer, plain), jaxlens.prompts.decode(tokenizer, steered)
    log(
        run,
        {
            "stage": "generate",
            "resid_norms": np.linalg.norm(acts, axis=-1).mean(1).tolist(),
            "plain": texts[0],
            "steered": texts[1],
            "mean_logprob_plain": float(plain.logprobs.mean()),
            "mean_logprob_steered": float(steered.logprobs.mean()),
            "tokens_changed_by_steering": int((plain.tokens != steered.tokens).sum()),
        },
    )


def train_sae(run: Path, config, params, tokens, args) -> None:
    source = sae.ModelActivations(
        params,
        config,
        tokens,
        site="resid_post",
        layers=2,
        sequences_per_forward=8,
        buffer_tokens=2048,
        key=jax.random.key(1),
    )
    sae_config = sae.SAEConfig(
        d_in=config.d_model, d_sae=8 * config.d_model, architecture="topk", k=8
    )
    history = []
    params_sae = sae.fit(
        source,
        sae_config,
        key=jax.random.key(2),
        steps=args.sae_steps,
        batch_size=256,
        callback=lambda step, stats: history.append((step, stats)),
    )
    batch = next(source.iter_batches(1024))
    m = sae.metrics(params_sae, jnp.asarray(batch), config=sae_config)
    spliced = sae.spliced_metrics(
        params,
        tokens[:8],
        model_config=config,
        sae_params=params_sae,
        sae_config=sae_config,
        site="resid_post",
        layer=2,
    )
    sae.save_saelens(run / "sae_layer2", sae_config, params_sae)
    log(
        run,
        {
            "stage": "sae",
            **{
                k: np.asarray(v).tolist() for k, v in m._asdict().items() if np.asarray(v).size < 64
            },
            **{k: float(v) for k, v in spliced._asdict().items()},
        },
    )
    plot_sae(run, history)


def plot_sae(run: Path, history) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s, _ in history]
    fig, ax = plt.subplots(figsize=(5, 3))
    for name in ("fvu", "l0"):
        if history and name in history[0][1]:
            ax.plot(steps, [float(np.mean(st[name])) for _, st in history], label=name)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run / "sae_training.png", dpi=100)
    plt.close(fig)


def play_games(run: Path, games: int) -> None:
    sample_replies = {
        "tictactoe": "The centre is strongest. \\boxed{[4]}",
        "kuhn_poker": "With a middling card I check. \\boxed{check}",
        "negotiation": "I value Gold. \\boxed{[Offer: 3 Wood -> 1 Gold]}",
    }
    strong = {
        "tictactoe": rl.opponents.Minimax(),
        "kuhn_poker": rl.opponents.KuhnNash(alpha=1 / 6),
        "negotiation": rl.opponents.HeuristicNegotiator(),
    }
    for name, player in strong.items():
        env = rl.envs.make(name)
        policies = (player, rl.opponents.RandomLegal(env))
        result = rl.envs.rollout(env, policies, jax.random.key(3), batch=games)
        returns = np.asarray(result.returns)[:, 0]
        state = env.init(jax.random.key(4))
        prompt = rl.text.render(env, state, int(state.current_player))
        action, reason = rl.text.parse(env, state, sample_replies[name])
        log(
            run,
            {
                "stage": "games",
                "game": name,
                "games": games,
                "seat0_win": float((returns > 0).mean()),
                "draw": float((returns == 0).mean()),
                "seat0_loss": float((returns < 0).mean()),
                "prompt_chars": len(prompt),
                "sample_reply": sample_replies[name],
                "parsed_action": int(action),
                "parse_reason": reason,
            },
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/quickstart"))
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=384)
    parser.add_argument("--lm-steps", type=int, default=300)
    parser.add_argument("--sae-steps", type=int, default=300)
    parser.add_argument("--games", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.run.mkdir(parents=True, exist_ok=True)
    (args.run / "metrics.jsonl").write_text("")
    (args.run / "config.json").write_text(
        json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2)
    )
    start = time.perf_counter()
    config, params, tokenizer, windows = build_model(args.run, args)
    steer_and_generate(args.run, config, params, tokenizer)
    train_sae(args.run, config, params, windows, args)
    play_games(args.run, args.games)
    records = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    report = ["# quickstart", "", f"Finished in {time.perf_counter() - start:.0f} s.", ""]
    report += [f"- `{json.dumps(r)[:400]}`" for r in records]
    (args.run / "report.md").write_text("\n".join(report) + "\n")
    print(f"run folder: {args.run}")


if __name__ == "__main__":
    main()
