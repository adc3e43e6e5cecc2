"""Trains jaxlens's built-in model from a corpus this project generates, on a CPU, in under an hour.

    python3 scripts/train_builtin.py                     # writes jaxlens/builtin/model/
    python3 scripts/train_builtin.py --quick --out /tmp/m  # a 2-minute smoke run

The corpus has three generated parts, each from the package whose data it is:
persona conversations (`jaxlens.personality.persona_conversations`: IPIP-50 answers, replies to
generic instructions, forced-choice picks, all following a Big Five profile), game turns
(`rl.transcripts.game_conversations`: the exact self-play prompts answered by players from
random-legal to decent) and plain text (`sae.stories`). Conversations are rendered with the
ChatML template of a byte-level BPE trained on the same corpus, packed whole into windows
(`jaxlens.builtin.pack_windows`; each conversation attends only to itself) and learned by
next-token prediction (`jaxlens.builtin.training.fit_lm`) on the chat replies (answers, moves,
picks: the prompts are only read) and, at `--prose-weight`, the prose.
Everything is deterministic given `--seed`. The run folder (`runs/train_builtin/`) has the loss
curve, held-out perplexity per corpus part and the report; the model directory gets the
weights (bfloat16 safetensors), config, tokenizer and a model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxlens  # noqa: E402
import jaxlens.personality as personality  # noqa: E402
import jaxlens.runs  # noqa: E402
import rl.transcripts  # noqa: E402
import sae.stories  # noqa: E402
from jaxlens.builtin import builtin_config, model_card, pack_windows  # noqa: E402
from jaxlens.builtin.training import fit_lm  # noqa: E402
from jaxlens.hf import train_tokenizer  # noqa: E402
from jaxlens.runs import RunFolder, progress  # noqa: E402

STAGES_FILE = "training_stages.json"  # every run that led to these weights, oldest first


def git_commit() -> str | None:
    """The checkout's commit (with "+dirty" when files differ from it), None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def earlier_stages(init: Path | None) -> list[dict]:
    """The training runs behind the `--init` weights (none for a random init)."""
    if init is None:
        return []
    f = Path(init) / STAGES_FILE
    if not f.exists():
        return [{"command": f"(weights from {init}, history unknown)"}]
    return json.loads(f.read_text())


def drop_load_time_keys(path: Path) -> None:
    """A tokenizer loaded from a local directory (`--init`) saves how it was loaded
    ("is_local", "local_files_only"); those describe this machine, not the model."""
    cfg = json.loads(path.read_text())
    for key in ("is_local", "local_files_only"):
        cfg.pop(key, None)
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def shares(text: str) -> tuple[float, ...]:
    """`--persona-mix` "0.45,0.15,0.1,0.3" -> a tuple of floats (their sum is checked later)."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated numbers, e.g. 0.45,0.15,0.1,0.3"
        ) from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=jaxlens.BUILTIN_MODEL, help="model directory")
    p.add_argument("--run", type=Path, default=Path("runs/train_builtin"), help="run folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--personas", type=int, default=5000, help="persona conversations")
    p.add_argument(
        "--games",
        type=int,
        default=3500,
        help="game-turn conversations, split by --game-mix",
    )
    p.add_argument(
        "--move-weight",
        type=float,
        default=1.0,
        help="loss weight of a game reply's reason and move (the tokens after its first "
        "sentence, which restates the legal set), relative to 1 for other reply tokens",
    )
    p.add_argument(
        "--game-mix",
        type=shares,
        default=tuple(GAME_SHARES.values()),
        metavar="T,K,N",
        help="shares of the game turns: TicTacToe, Kuhn Poker, Negotiation "
        f"(default {','.join(map(str, GAME_SHARES.values()))})",
    )
    p.add_argument("--stories", type=int, default=12000, help="plain-text documents")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-ff", type=int, default=704)
    p.add_argument("--seq-len", type=int, default=512, help="training window (tokens)")
    # Small batches, many steps: early in training more updates beat bigger batches.
    p.add_argument("--batch-size", type=int, default=4, help="windows per step")
    p.add_argument("--steps", type=int, default=1150)
    p.add_argument("--lr", type=float, default=1.5e-3, help="peak Adam lr (warmup, cosine decay)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--snapshot-every", type=int, default=250, help="steps between saves")
    p.add_argument(
        "--init",
        type=Path,
        help="continue from this model directory (its weights and tokenizer) instead of a "
        "random init",
    )
    p.add_argument(
        "--loss",
        choices=("replies", "all"),
        default="replies",
        help="replies: learn the chat replies (answers, moves, picks) and the prose, not the "
        "prompts, which the model only reads; all: every token",
    )
    p.add_argument(
        "--prose-weight",
        type=float,
        default=0.1,
        help="loss weight of the prose that fills each window with --loss replies (0..1); the "
        "prose has ~3x the replies' tokens and would otherwise dominate the gradient",
    )
    p.add_argument(
        "--persona-mix",
        type=shares,
        default=None,
        metavar="I,O,F[,R]",
        help="shares of the persona conversations: questionnaire items, open replies, forced "
        f"choice and card recall (default {','.join(map(str, PERSONA_CORPUS.mix))})",
    )
    p.add_argument(
        "--positive-keyed",
        type=float,
        default=None,
        metavar="P",
        help="curriculum: draw a positively keyed questionnaire item with probability P "
        "(default: uniformly over the 50); the held-out corpus stays uniform",
    )
    p.add_argument(
        "--profiles",
        choices=("fixed", "fresh"),
        default="fixed",
        help="fixed: ~1,600 training characters, each keeping its Big Five profile all corpus "
        "long (the shipped weights' runs); fresh: a new profile for every persona conversation "
        "(names repeat, profiles do not), so a character's traits can only be read from its "
        "card, never remembered by name",
    )
    p.add_argument("--quick", action="store_true", help="tiny corpus and model, for tests")
    args = p.parse_args(argv)
    try:  # a bad mix or share fails here, with the flag's name, not after the corpus is built
        persona_config(args)
    except ValueError as e:
        p.error(f"--persona-mix / --positive-keyed: {e}")
    if not args.move_weight >= 0:
        p.error(f"--move-weight {args.move_weight}: expected a weight >= 0")
    if len(args.game_mix) != len(GAME_SHARES) or min(args.game_mix) < 0 or sum(args.game_mix) <= 0:
        p.error(f"--game-mix {args.game_mix}: expected {len(GAME_SHARES)} shares >= 0, not all 0")
    if args.quick:
        args.personas, args.games, args.stories = 300, 200, 400
        args.vocab_size, args.d_model, args.layers, args.d_ff = 1024, 64, 2, 128
        args.steps, args.batch_size, args.log_every = 40, 4, 10
    return args


# Questionnaire-heavy, one level word per trait on the card, up to 10 answers per conversation:
# a small model learns the persona -> answer lookup from answers, and these put the most of them
# per token.
PERSONA_CORPUS = personality.CorpusConfig(
    mix=(0.7, 0.2, 0.1), max_turns=10, answer_noise=0.2, max_chars=2600
)
# TicTacToe is the game whose legality needs the board read; it gets the largest share.
GAME_SHARES = {"tictactoe": 0.5, "kuhn_poker": 0.2, "negotiation": 0.3}


def persona_config(args) -> personality.CorpusConfig:
    """`PERSONA_CORPUS` with --persona-mix and --positive-keyed applied."""
    return dataclasses.replace(
        PERSONA_CORPUS,
        mix=args.persona_mix or PERSONA_CORPUS.mix,
        positive_keyed=args.positive_keyed,
    )


def corpus(args, seed: int, scale: float = 1.0, curriculum: bool = True) -> dict[str, list]:
    """The three parts: lists of chat conversations (personas, games) and of texts (stories).
    `curriculum` applies --persona-mix and --positive-keyed (the held-out set does not)."""
    n = lambda k: max(int(k * scale), 1)
    if args.profiles == "fresh":
        personas = personality.fresh_personas(n(args.personas), seed=seed)
    else:
        personas = personality.train_personas(personality.make_personas(2000, seed=0))
    config = persona_config(args) if curriculum else PERSONA_CORPUS
    conversations = personality.persona_conversations(personas, seed=seed, config=config)
    game_mix = np.array(args.game_mix) / sum(args.game_mix)
    games = [
        conv
        for g, (game, share) in enumerate(zip(GAME_SHARES, game_mix, strict=True))
        for conv in rl.transcripts.game_conversations(
            seed=seed + g, games=(game,), n=n(args.games * share)
        )
    ]
    return {
        "personas": list(itertools.islice(conversations, n(args.personas))),
        "games": games,
        "stories": list(sae.stories.stories(seed=seed, n=n(args.stories))),
    }


def chatml(conversation: list[dict]) -> str:
    # The layout of `jaxlens.hf.CHATML_TEMPLATE`, written out: the tokenizer is trained on these
    # texts before any tokenizer (and so its template) exists.
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation)


ASSISTANT = "<|im_start|>assistant\n"  # the header every chat reply starts with


def reason_starts(tokenizer, messages: list[dict]) -> list[int | None]:
    """Per message, the token index (header included) where a reply's first sentence ends;
    None for prompts and for replies of a single sentence. One batched tokenizer call."""
    cuts = [m["content"].find(". ") + 1 if m["role"] == "assistant" else 0 for m in messages]
    heads = [ASSISTANT + m["content"][:c] for m, c in zip(messages, cuts, strict=True) if c]
    lengths = iter(
        map(len, tokenizer(heads, add_special_tokens=False)["input_ids"] if heads else [])
    )
    return [next(lengths) if c else None for c in cuts]


def tokenize(
    tokenizer, parts: dict[str, list], move_weight: float = 1.0
) -> dict[str, list[tuple[list[int], list[float]]]]:
    """Token ids per document, each with loss weights: 1 on chat replies (assistant turns), 0
    on prompts; in game replies the tokens after the first sentence (the restated legal set),
    that is the reason and the move, weigh `move_weight`.

    Messages are tokenized one by one: each ends at a special token, so the ids equal those of
    the whole rendered conversation."""
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = len(tokenizer(ASSISTANT, add_special_tokens=False)["input_ids"])
    out = {}
    for name, docs in parts.items():
        if name == "stories":
            ids = tokenizer(list(docs), add_special_tokens=False)["input_ids"]
            out[name] = [(d + [eos], [1.0] * (len(d) + 1)) for d in ids]
            continue
        flat = [m for c in docs for m in c]
        ids = iter(tokenizer([chatml([m]) for m in flat], add_special_tokens=False)["input_ids"])
        weigh = name == "games" and move_weight != 1.0
        starts = iter(reason_starts(tokenizer, flat) if weigh else [None] * len(flat))
        out[name] = []
        for conv in docs:
            toks, weights = [], []
            for m in conv:
                part, k = next(ids), next(starts)
                reply = float(m["role"] == "assistant")
                w = [0.0] * header + [reply] * (len(part) - header)
                if k is not None:
                    w[k:] = [move_weight] * (len(part) - k)
                toks += part
                weights += w
            out[name].append((toks, weights))
    return out


def heldout_perplexity(params, config, docs: list[tuple[list[int], list[bool]]], seq_len) -> float:
    """exp(mean next-token loss) over the learned tokens (mask true) of held-out documents,
    one padded batch each 16."""
    total, count = 0.0, 0
    score = jax.jit(lambda p, t, m: jaxlens.token_logprobs(p, t, config=config, attention_mask=m))
    for i in range(0, len(docs), 16):
        chunk = docs[i : i + 16]
        tokens = np.zeros((len(chunk), seq_len), np.int32)
        mask, learn = np.zeros_like(tokens), np.zeros(tokens.shape, bool)
        for r, (d, m) in enumerate(chunk):
            tokens[r, : len(d)], mask[r, : len(d)], learn[r, : len(d)] = d[:seq_len], 1, m[:seq_len]
        lp = np.asarray(score(params, jnp.asarray(tokens), jnp.asarray(mask)))
        valid = learn[:, 1:] & (mask[:, :-1] > 0)
        total += float(-(lp * valid).sum())
        count += int(valid.sum())
    return float(np.exp(total / max(count, 1)))


def main(argv=None) -> dict:
    args = parse_args(argv)
    run = RunFolder(args.run, config=vars(args), command=sys.argv)
    commit = git_commit()  # of the code that builds the corpus, before anyone edits it
    t0 = time.time()
    parts = corpus(args, args.seed)
    heldout = corpus(args, args.seed + 1000, scale=0.02, curriculum=False)
    texts = [chatml(c) for k in ("personas", "games") for c in parts[k]] + parts["stories"]
    if args.init is None:
        tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size, path=args.run / "tokenizer")
    else:
        tokenizer = jaxlens.load_tokenizer(args.init)
    ids, heldout_ids = tokenize(tokenizer, parts, args.move_weight), tokenize(tokenizer, heldout)
    n_tokens = {k: sum(len(d) for d, _ in v) for k, v in ids.items()}
    print(f"corpus built in {time.time() - t0:.0f}s: tokens per part {n_tokens}", flush=True)
    documents = [d for d in ids["personas"] + ids["games"] if len(d[0]) <= args.seq_len]
    dropped = len(ids["personas"]) + len(ids["games"]) - len(documents)
    if dropped:
        print(f"dropped {dropped} conversations longer than --seq-len {args.seq_len}", flush=True)
    windows, loss_mask, segments = pack_windows(
        [d for d, _ in documents],
        [d for d, _ in ids["stories"]],
        seq_len=args.seq_len,
        seed=args.seed,
        masks=[m for _, m in documents] if args.loss == "replies" else None,
        filler_weight=args.prose_weight,
    )
    special = {
        "bos": tokenizer.convert_tokens_to_ids("<s>"),
        "eos": (tokenizer.convert_tokens_to_ids("<|im_end|>"),),
        "pad": tokenizer.pad_token_id,
    }
    config = builtin_config(
        vocab_size=args.vocab_size,
        d_model=args.d_model,
        n_layers=args.layers,
        d_ff=args.d_ff,
        head_dim=min(32, args.d_model // 2),
        special=special,
    )
    if args.init is None:
        params = jaxlens.init_params(jax.random.key(args.seed), config)
    else:
        config, params = jaxlens.load_hf(args.init, dtype="float32")
    n_params = sum(x.size for x in jax.tree.leaves(params))
    run.log(
        {
            "stage": "corpus",
            "windows": int(windows.shape[0]),
            "params": n_params,
            "dropped": dropped,
            **n_tokens,
        }
    )

    def save(params, out: Path) -> None:
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        bf16 = config.replace(param_dtype="bfloat16")
        jaxlens.save_hf(tmp, bf16, jax.tree.map(lambda x: x.astype(jnp.bfloat16), params))
        tokenizer.save_pretrained(tmp)
        drop_load_time_keys(tmp / "tokenizer_config.json")
        (tmp / "README.md").write_text(card_text)
        (tmp / STAGES_FILE).write_text(json.dumps(stages, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # readers never see a half-written model

    stages = earlier_stages(args.init)  # this run is appended when it ends
    losses: list[tuple[int, float]] = []
    bar = progress(range(args.steps), desc="train", unit="step", total=args.steps)
    card_text = "(training in progress)"

    def on_loss(step: int, loss: float) -> None:
        losses.append((step, loss))
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}")
        run.log({"stage": "train", "step": step, "loss": loss})

    def on_snapshot(step: int, params) -> None:
        if step % args.snapshot_every == 0 and step < args.steps:
            save(params, args.out)

    t_train = time.time()
    params = fit_lm(
        params,
        windows,
        config=config,
        key=jax.random.key(args.seed + 1),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        log_every=args.log_every,
        callback=on_loss,
        snapshot=on_snapshot,
        loss_mask=loss_mask,
        segments=segments,
    )
    bar.close()
    train_s = time.time() - t_train
    bf16_params = jax.tree.map(lambda x: x.astype(jnp.bfloat16).astype(jnp.float32), params)
    ppl = {
        k: round(heldout_perplexity(bf16_params, config, v, args.seq_len), 3)
        for k, v in heldout_ids.items()
    }
    what = {"personas": "persona replies", "games": "game replies", "stories": "prose"}
    results = {f"held-out perplexity ({what[k]})": v for k, v in ppl.items()}
    results.update(
        {"final training loss": round(losses[-1][1], 4), "training time (s)": round(train_s)}
    )
    command = " ".join(["python3"] + sys.argv)
    stages.append(
        {
            "command": command,
            "steps": args.steps,
            "batch": f"{args.batch_size} x {args.seq_len}",
            "peak lr": args.lr,
            "seed": args.seed,
            "seconds": round(train_s),
            "commit": commit,
        }
    )
    card_text = model_card(
        config,
        corpus={
            "Persona conversations": f"{len(parts['personas'])} ({n_tokens['personas']:,} tokens): "
            "IPIP-50 Likert answers with reasons, replies to generic instructions, "
            "forced-choice self-statement picks and (with a fourth --persona-mix share) card "
            "recall, each following a Big Five profile given as a character card or a "
            "self-description",
            "Game turns": f"{len(parts['games'])} ({n_tokens['games']:,} tokens): TicTacToe, "
            "Kuhn Poker and Simple Negotiation prompts answered with the legal set restated (a "
            "TicTacToe reply stars the cell it takes), a short reason and a \\boxed{} move by "
            "players from random-legal to decent",
            "Plain text": f"{len(parts['stories'])} ({n_tokens['stories']:,} tokens): short "
            "stories, dialogues, logs, recipes and descriptions",
        },
        training={
            "steps": args.steps,
            "batch": f"{args.batch_size} x {args.seq_len} tokens",
            "optimizer": f"Adam, peak lr {args.lr}, warmup + cosine decay",
            "seed": args.seed,
            "starting point": "random init" if args.init is None else f"the model in {args.init}",
            "loss": f"chat replies, and prose at weight {args.prose_weight}"
            if args.loss == "replies"
            else "every token",
            "command": command,
        },
        results=results,
        stages=stages,
    )
    save(params, args.out)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps_, values = zip(*losses, strict=True)
    ax.plot(steps_, values)
    ax.set(xlabel="step", ylabel="training loss (nats/token)", title="built-in model")
    ax.grid(alpha=0.3)
    run.figure("loss", fig)
    run.summary(
        {
            "parameters": n_params,
            **results,
            "tokens seen": args.steps * args.batch_size * args.seq_len,
        }
    )
    run.write_report("Built-in model training")
    print("\n".join(f"{k:>32}: {v}" for k, v in results.items()))
    return results


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
