"""SPIRAL's loop, ours vs the way users write it today, on the same model and batch.

    python3 scripts/bench_spiral.py --quick

Ours: `rl.selfplay.collect` (one batched `jaxlens.generate` per turn over every game's prompt,
vectorised envs, `rl.text` parsing) and `rl.selfplay.learner.update` (jitted PPO-clip with
micro-batch accumulation). Peer: HF transformers `generate` (left padded, sampling) over the
same chat prompts, TextArena 0.7.4 envs stepped with the decoded replies, and a PyTorch PPO-clip
step (same sequences, micro-batches, epochs, Adam + grad clipping). Both sample at temperature
1.0 up to the same `max_new_tokens`, for the same number of batched turns of TicTacToe and Kuhn
Poker, self-play, from the same HF directory (the built-in model, or with `--random-model` a
random Llama of the built-in's shape saved with `jaxlens.save_hf`).

Results: turn samples/s and generated tokens/s of the rollout, learner tokens/s (prompt and
response tokens through forward + backward, per epoch), with the rollout time split into
generate / env / text, and an end-to-end (rollout + learn) samples/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import _bench
import jax
import numpy as np

import jaxlens
import jaxlens.runs
import rl.selfplay as sp
import rl.transcripts
from rl.selfplay import learner


def random_model(path: Path, quick: bool) -> Path:
    """A random Llama (the built-in's shape, or smaller with --quick) with a game tokenizer."""
    from jaxlens.hf import train_tokenizer

    texts = [m["content"] for c in rl.transcripts.game_conversations(seed=5, n=200) for m in c]
    tok = train_tokenizer(texts, vocab_size=1024 if quick else 4096)
    size = (
        dict(d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=32, d_ff=384)
        if quick
        else dict(d_model=256, n_layers=6, n_heads=8, n_kv_heads=4, head_dim=32, d_ff=768)
    )
    config = jaxlens.ModelConfig(
        vocab_size=len(tok),
        max_seq_len=1024,
        eos_token_ids=(2,),
        bos_token_id=1,
        pad_token_id=0,
        **size,
    )
    jaxlens.save_hf(path, config, jaxlens.init_params(jax.random.key(0), config))
    tok.save_pretrained(path)
    return path


def ours(model_dir, args):
    model = jaxlens.load_model(model_dir, dtype="float32")
    config, params = model.config, model.params
    policy = sp.ModelPolicy.of(model, sp.GenerationConfig(max_new_tokens=args.max_new_tokens))
    cfg = sp.RolloutConfig(games=("tictactoe", "kuhn_poker"), slots=args.batch)
    run = lambda k: sp.collect(
        policy, params, jax.random.PRNGKey(k), config=cfg, min_samples=10**9, max_turns=args.turns
    )
    run(0)  # compile
    start = time.perf_counter()
    roll = run(1)
    seconds = time.perf_counter() - start
    ppo = sp.PPOConfig(lr=1e-5, micro_batch=args.micro_batch, epochs=2)
    samples = [s for s in roll.samples][: args.batch * 2] or _unfinished(policy, params, cfg)
    adv = np.where(np.arange(len(samples)) % 2, 1.0, -1.0)
    batch = learner.pack(
        [s.prompt_ids for s in samples],
        [s.response_ids for s in samples],
        [s.logprobs for s in samples],
        adv,
        micro_batch=args.micro_batch,
        pad_id=policy.pad_id,
    )
    batch = jax.tree.map(jax.numpy.asarray, batch)
    state = learner.init_state(params, ppo)
    state, m = learner.update(state, batch, config=config, ppo=ppo)  # compile
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    state, m = learner.update(state, batch, config=config, ppo=ppo)
    jax.block_until_ready(m)
    learn = time.perf_counter() - t0
    tokens = int(np.asarray(batch.mask).sum()) * ppo.epochs
    return {
        "seconds": seconds,
        "replies": roll.replies,
        "reply_tokens": roll.reply_tokens,
        **{f"t_{k}": v for k, v in roll.timing.items()},
        "learn_s": learn,
        "learn_tokens": tokens,
        "sequences": [(s.prompt_ids, s.response_ids) for s in samples],
    }


def _unfinished(policy, params, cfg):
    raise SystemExit("no finished game in the timed turns: raise --turns")


class PeerLoop:
    """The usual loop: TextArena envs, HF chat prompts, `model.generate`, decoded replies."""

    def __init__(self, model_dir, args):
        import torch
        from textarena.envs.KuhnPoker.env import KuhnPokerEnv
        from textarena.envs.TicTacToe.env import TicTacToeEnv
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        self.args = args
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
        self.stop = self.tok.convert_tokens_to_ids("<|im_end|>")
        self.makers = [TicTacToeEnv, lambda: KuhnPokerEnv(max_rounds=5)]

    def new(self, i):
        env = self.makers[i % 2]()
        env.reset(num_players=2, seed=i)
        return env

    def generate(self, envs, t):
        """(decoded replies, new tokens) for every env's current observation."""
        import torch

        t0 = time.perf_counter()
        obs = [env.get_observation()[1] for env in envs]
        chats = [[{"role": "user", "content": str(o)}] for o in obs]
        prompts = [
            self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in chats
        ]
        enc = self.tok(prompts, return_tensors="pt", padding=True)
        t["text"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                max_new_tokens=self.args.max_new_tokens,
                eos_token_id=self.stop,
                pad_token_id=self.tok.pad_token_id,
            )
        t["generate"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        texts = self.tok.batch_decode(new_tokens, skip_special_tokens=True)
        t["text"] += time.perf_counter() - t0
        return texts, int((new_tokens != self.tok.pad_token_id).sum())

    def turns(self, n):
        """(time split, replies, reply tokens) of `n` batched turns."""
        envs = [self.new(i) for i in range(self.args.batch)]
        t = {"generate": 0.0, "env": 0.0, "text": 0.0}
        replies = tokens = 0
        for _ in range(n):
            texts, count = self.generate(envs, t)
            tokens += count
            t0 = time.perf_counter()
            for i, env in enumerate(envs):
                done, _ = env.step(texts[i])
                if done:
                    env.close()
                    envs[i] = self.new(i + self.args.batch)
            replies += len(envs)
            t["env"] += time.perf_counter() - t0
        return t, replies, tokens


def peer(model_dir, args, sequences):
    loop = PeerLoop(model_dir, args)
    loop.turns(1)
    start = time.perf_counter()
    timing, replies, tokens = loop.turns(args.turns)
    seconds = time.perf_counter() - start
    learn, learn_tokens = torch_ppo(loop.model, sequences, args)
    return {
        "seconds": seconds,
        "replies": replies,
        "reply_tokens": tokens,
        **{f"t_{k}": v for k, v in timing.items()},
        "learn_s": learn,
        "learn_tokens": learn_tokens,
    }


def torch_ppo(model, sequences, args):
    """Two epochs of PPO-clip over micro-batches of the same sequences, Adam + clipping."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.9, 0.95))
    rows = []
    for p, r in sequences:
        ids = torch.tensor(np.concatenate([p, r]), dtype=torch.long)
        rows.append((ids, len(r)))
    width = max(len(ids) for ids, _ in rows)
    adv = torch.tensor([1.0 if i % 2 else -1.0 for i in range(len(rows))])

    def epoch():
        opt.zero_grad()
        for i in range(0, len(rows), args.micro_batch):
            chunk = rows[i : i + args.micro_batch]
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            resp = torch.zeros((len(chunk), width - 1))
            for j, (seq, n) in enumerate(chunk):
                ids[j, width - len(seq) :] = seq
                mask[j, width - len(seq) :] = 1
                resp[j, width - 1 - n :] = 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[
                ..., 0
            ]
            old = logp.detach()
            ratio = torch.exp(logp - old)
            a = adv[i : i + len(chunk), None]
            loss = -torch.minimum(ratio * a, ratio.clamp(0.8, 1.2) * a)
            ((loss * resp).sum() / 4096.0).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    epoch()  # warm-up
    t0 = time.perf_counter()
    epoch()
    epoch()
    tokens = 2 * sum(len(ids) for ids, _ in rows)
    return time.perf_counter() - t0, tokens


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    _bench.add_run_args(p, "bench_spiral")
    p.add_argument("--model", default=None, help="HF directory (default: the built-in model)")
    p.add_argument("--random-model", action="store_true", help="a random model of that shape")
    p.add_argument("--batch", type=int, default=None, help="games side by side")
    p.add_argument("--turns", type=int, default=None, help="timed batched turns")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--micro-batch", type=int, default=8)
    args = p.parse_args(argv)
    args.batch = args.batch or (8 if args.quick else 16)
    args.turns = args.turns or (4 if args.quick else 12)
    args.max_new_tokens = args.max_new_tokens or (32 if args.quick else 64)
    run = _bench.open_run("bench_spiral", args)
    tmp = tempfile.TemporaryDirectory()
    builtin = Path(jaxlens.BUILTIN_MODEL)
    model_dir = args.model or (None if args.random_model or not builtin.is_dir() else builtin)
    if model_dir is None:
        model_dir = random_model(Path(tmp.name) / "model", args.quick)
    a = ours(model_dir, args)
    b = peer(model_dir, args, a.pop("sequences"))
    results = [
        _bench.Result(
            "rollout_turn_samples",
            a["replies"] / a["seconds"],
            b["replies"] / b["seconds"],
            "samples/s",
        ),
        _bench.Result(
            "rollout_generated_tokens",
            a["reply_tokens"] / a["seconds"],
            b["reply_tokens"] / b["seconds"],
            "tokens/s",
        ),
        _bench.Result(
            "learner",
            a["learn_tokens"] / a["learn_s"],
            b["learn_tokens"] / b["learn_s"],
            "tokens/s",
        ),
        _bench.Result(
            "end_to_end",
            a["replies"] / (a["seconds"] + a["learn_s"]),
            b["replies"] / (b["seconds"] + b["learn_s"]),
            "samples/s",
        ),
    ]
    split = {f"{who}_{k}": v for who, d in (("ours", a), ("peer", b)) for k, v in d.items()}
    run.section("Time split (s)", jaxlens.runs.markdown_table(split))
    _bench.finish(
        run,
        results,
        "SPIRAL loop vs transformers + TextArena + PyTorch",
        extra={"split": split, "model": str(model_dir)},
    )


if __name__ == "__main__":
    sys.exit(main())
