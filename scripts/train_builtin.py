"""Trains jaxlens's built-in model from a corpus this project generates, on a CPU, in under an hour.

    python3 scripts/train_builtin.py                     # writes jaxlens/builtin/model/
    python3 scripts/train_builtin.py --quick --out /tmp/m  # a 2-minute smoke run

The corpus has three generated parts, each from the package whose data it is:
persona conversations (`jaxlens.personality.persona_conversations`: IPIP-50 answers, replies to
generic instructions, forced-choice picks, all following a Big Five profile), game turns
(`rl.transcripts.game_conversations`: the exact self-play prompts answered by players from
random-legal to decent) and plain text (`sae.stories`), mixed by `jaxlens.builtin.corpus`.
Conversations are rendered with the ChatML template of a byte-level BPE trained on the same
corpus, packed whole into windows (`jaxlens.builtin.documents`; each conversation attends only
to itself) and learned by next-token prediction (`jaxlens.builtin.training.fit_lm`) on the chat
replies (answers, moves, picks: the prompts are only read) and, at `--prose-weight`, the prose.
Everything is deterministic given `--seed`. The run folder (`runs/train_builtin/`) has the loss
curve, held-out perplexity per corpus part and the report; the model directory gets the
weights (bfloat16 safetensors), config, tokenizer and a model card
(`jaxlens.builtin.directory`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jaxlens  # noqa: E402
import jaxlens.runs  # noqa: E402
import rl.transcripts  # noqa: E402
import sae.stories  # noqa: E402
from jaxlens.builtin import builtin_config, model_card  # noqa: E402
from jaxlens.builtin.corpus import (  # noqa: E402
    GAME_SHARES,
    PERSONA_CORPUS,
    CorpusRecipe,
    build_corpus,
    corpus_card,
    persona_settings,
)
from jaxlens.builtin.directory import earlier_stages, save_model_dir  # noqa: E402
from jaxlens.builtin.documents import (  # noqa: E402
    heldout_perplexity,
    pack_corpus,
    tokenize,
    tokenizer_texts,
)
from jaxlens.builtin.recipe import special_ids  # noqa: E402
from jaxlens.builtin.training import fit_lm  # noqa: E402
from jaxlens.hf import train_tokenizer  # noqa: E402
from jaxlens.runs import RunFolder, progress  # noqa: E402

# The generators `jaxlens` cannot import itself (it never imports `rl` or `sae`).
GENERATORS = {
    "game_conversations": rl.transcripts.game_conversations,
    "stories": sae.stories.stories,
}
PART_NAMES = {"personas": "persona replies", "games": "game replies", "stories": "prose"}


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


def shares(text: str) -> tuple[float, ...]:
    """`--persona-mix` "0.45,0.15,0.1,0.3" -> a tuple of floats (their sum is checked later)."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated numbers, e.g. 0.45,0.15,0.1,0.3"
        ) from None


def add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--personas", type=int, default=5000, help="persona conversations")
    p.add_argument(
        "--games", type=int, default=3500, help="game-turn conversations, split by --game-mix"
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


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-ff", type=int, default=704)
    p.add_argument(
        "--init",
        type=Path,
        help="continue from this model directory (its weights and tokenizer) instead of a "
        "random init",
    )


def add_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seq-len", type=int, default=512, help="training window (tokens)")
    # Small batches, many steps: early in training more updates beat bigger batches.
    p.add_argument("--batch-size", type=int, default=4, help="windows per step")
    p.add_argument("--steps", type=int, default=1150)
    p.add_argument("--lr", type=float, default=1.5e-3, help="peak Adam lr (warmup, cosine decay)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--snapshot-every", type=int, default=250, help="steps between saves")
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
        "--move-weight",
        type=float,
        default=1.0,
        help="loss weight of a game reply's reason and move (the tokens after its first "
        "sentence, which restates the legal set), relative to 1 for other reply tokens",
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=jaxlens.BUILTIN_MODEL, help="model directory")
    p.add_argument("--run", type=Path, default=Path("runs/train_builtin"), help="run folder")
    add_corpus_args(p)
    add_model_args(p)
    add_training_args(p)
    p.add_argument("--quick", action="store_true", help="tiny corpus and model, for tests")
    args = p.parse_args(argv)
    # a bad mix or share fails here, with the flag's name, not after the corpus is built
    try:
        persona_settings(args.persona_mix, args.positive_keyed)
    except ValueError as e:
        p.error(f"--persona-mix / --positive-keyed: {e}")
    if not args.move_weight >= 0:
        p.error(f"--move-weight {args.move_weight}: expected a weight >= 0")
    try:
        corpus_recipe(args)
    except ValueError as e:
        p.error(f"--game-mix / --personas / --games / --stories: {e}")
    if args.quick:
        args.personas, args.games, args.stories = 300, 200, 400
        args.vocab_size, args.d_model, args.layers, args.d_ff = 1024, 64, 2, 128
        args.steps, args.batch_size, args.log_every = 40, 4, 10
    return args


def corpus_recipe(args) -> CorpusRecipe:
    """The corpus the flags ask for."""
    return CorpusRecipe(
        personas=args.personas,
        games=args.games,
        game_mix=args.game_mix,
        stories=args.stories,
        profiles=args.profiles,
        persona=persona_settings(args.persona_mix, args.positive_keyed),
    )


def make_tokenizer(args, parts: dict[str, list]):
    """A byte-level BPE trained on the corpus, or the `--init` model's own."""
    if args.init is not None:
        return jaxlens.load_tokenizer(args.init)
    texts = tokenizer_texts(parts)
    return train_tokenizer(texts, vocab_size=args.vocab_size, path=args.run / "tokenizer")


def initial_model(args, tokenizer):
    """`(config, params)`: a random init of the flags' shape, or the `--init` model in fp32."""
    config = builtin_config(
        vocab_size=args.vocab_size,
        d_model=args.d_model,
        n_layers=args.layers,
        d_ff=args.d_ff,
        head_dim=min(32, args.d_model // 2),
        special=special_ids(tokenizer),
    )
    if args.init is not None:
        return jaxlens.load_hf(args.init, dtype="float32")
    return config, jaxlens.init_params(jax.random.key(args.seed), config)


def train(args, run: RunFolder, packed, config, params, save) -> tuple[object, list]:
    """`fit_lm` with a progress bar, the loss logged and a snapshot `save(params)` every
    `--snapshot-every` steps; returns the trained params and the `(step, loss)` curve."""
    losses: list[tuple[int, float]] = []
    bar = progress(range(args.steps), desc="train", unit="step", total=args.steps)

    def on_loss(step: int, loss: float) -> None:
        losses.append((step, loss))
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}")
        run.log({"stage": "train", "step": step, "loss": loss})

    def on_snapshot(step: int, params) -> None:
        if step % args.snapshot_every == 0 and step < args.steps:
            save(params)

    params = fit_lm(
        params, packed.tokens, config=config, key=jax.random.key(args.seed + 1),
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, log_every=args.log_every,
        callback=on_loss, snapshot=on_snapshot, loss_mask=packed.loss_mask,
        segments=packed.segments,
    )  # fmt: skip
    bar.close()
    return params, losses


def heldout_results(args, params, config, heldout_ids) -> dict[str, float]:
    """Held-out perplexity per corpus part, of the weights as saved (bfloat16)."""
    bf16_params = jax.tree.map(lambda x: x.astype(jnp.bfloat16).astype(jnp.float32), params)
    return {
        f"held-out perplexity ({PART_NAMES[k]})": round(
            heldout_perplexity(bf16_params, config, v, args.seq_len), 3
        )
        for k, v in heldout_ids.items()
    }


def this_stage(args, command: str, seconds: float, commit: str | None) -> dict:
    """This run's row of the training history (`training_stages.json`, the card's table)."""
    return {
        "command": command,
        "steps": args.steps,
        "batch": f"{args.batch_size} x {args.seq_len}",
        "peak lr": args.lr,
        "seed": args.seed,
        "seconds": round(seconds),
        "commit": commit,
    }


def training_facts(args, command: str) -> dict[str, object]:
    """The model card's Training section."""
    return {
        "steps": args.steps,
        "batch": f"{args.batch_size} x {args.seq_len} tokens",
        "optimizer": f"Adam, peak lr {args.lr}, warmup + cosine decay",
        "seed": args.seed,
        "starting point": "random init" if args.init is None else f"the model in {args.init}",
        "loss": f"chat replies, and prose at weight {args.prose_weight}"
        if args.loss == "replies"
        else "every token",
        "command": command,
    }


def loss_figure(losses: list[tuple[int, float]]):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps, values = zip(*losses, strict=True)
    ax.plot(steps, values)
    ax.set(xlabel="step", ylabel="training loss (nats/token)", title="built-in model")
    ax.grid(alpha=0.3)
    return fig


def main(argv=None) -> dict:
    args = parse_args(argv)
    run = RunFolder(args.run, config=vars(args), command=sys.argv)
    commit = git_commit()  # of the code that builds the corpus, before anyone edits it
    t0, recipe = time.time(), corpus_recipe(args)
    parts = build_corpus(recipe, seed=args.seed, **GENERATORS)
    heldout = build_corpus(recipe.held_out(), seed=args.seed + 1000, scale=0.02, **GENERATORS)
    tokenizer = make_tokenizer(args, parts)
    ids, heldout_ids = tokenize(tokenizer, parts, args.move_weight), tokenize(tokenizer, heldout)
    n_tokens = {k: sum(len(d) for d, _ in v) for k, v in ids.items()}
    print(f"corpus built in {time.time() - t0:.0f}s: tokens per part {n_tokens}", flush=True)
    packed, dropped = pack_corpus(
        ids, seq_len=args.seq_len, seed=args.seed, replies_only=args.loss == "replies",
        prose_weight=args.prose_weight,
    )  # fmt: skip
    if dropped:
        print(f"dropped {dropped} conversations longer than --seq-len {args.seq_len}", flush=True)
    config, params = initial_model(args, tokenizer)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    run.log({"stage": "corpus", "windows": int(packed.tokens.shape[0]), "params": n_params,
             "dropped": dropped, **n_tokens})  # fmt: skip
    stages = earlier_stages(args.init)  # this run is appended when it ends

    def save(params, card: str = "(training in progress)") -> None:
        save_model_dir(args.out, config, params, tokenizer, card=card, stages=stages)

    t_train = time.time()
    params, losses = train(args, run, packed, config, params, save)
    train_s = time.time() - t_train
    results = heldout_results(args, params, config, heldout_ids)
    results.update(
        {"final training loss": round(losses[-1][1], 4), "training time (s)": round(train_s)}
    )
    command = " ".join(["python3"] + sys.argv)
    stages.append(this_stage(args, command, train_s, commit))
    corpus = corpus_card(parts, n_tokens)
    training = training_facts(args, command)
    save(params, model_card(config, corpus=corpus, training=training, results=results,
                            stages=stages))  # fmt: skip
    run.figure("loss", loss_figure(losses))
    tokens_seen = args.steps * args.batch_size * args.seq_len
    run.summary({"parameters": n_params, **results, "tokens seen": tokens_seen})
    run.write_report("Built-in model training")
    print("\n".join(f"{k:>32}: {v}" for k, v in results.items()))
    return results


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
