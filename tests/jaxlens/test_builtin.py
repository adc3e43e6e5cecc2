"""The built-in model: its corpus recipe, tokenising and packing, and the shipped HF directory.

The corpus recipe draws exactly the documents it drew when it lived in the training script
(digests of small corpora, recorded then). The shipped weights are checked as a user would:
the directory loads with `jaxlens.load_hf` and with `transformers`, and both give the same
logits; it fits the size promised.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path

import numpy as np
import pytest

import jaxlens
import rl.transcripts
from jaxlens.builtin import PackingError, builtin_config, model_card, pack_windows
from jaxlens.builtin.corpus import (
    PERSONA_CORPUS,
    CorpusRecipe,
    build_corpus,
    persona_settings,
)
from jaxlens.builtin.documents import pack_corpus, tokenize
from sae.stories import KINDS, stories

MODEL = jaxlens.BUILTIN_MODEL
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
needs_model = pytest.mark.skipif(
    not (MODEL / "model.safetensors").exists(),
    reason=f"no built-in model at {MODEL}: run scripts/train_builtin.py",
)


def _docs(rng, n, lo, hi):
    # Document i is made of the token 10 + i repeated, so every token names its document.
    return [[10 + i] * int(rng.integers(lo, hi)) for i in range(n)]


def test_pack_windows_keeps_every_document_whole_and_leaves_no_padding():
    rng = np.random.default_rng(3)
    docs = _docs(rng, 37, 5, 60)
    filler = [[1, 2, 3, 4, 5, 6, 7]] * 4
    windows, learn, segments = pack_windows(docs, filler, seq_len=64, seed=0)
    assert windows.shape[1] == 64 and windows.dtype == np.int32 and learn.all()
    for i, doc in enumerate(docs):
        rows, cols = np.nonzero(windows == 10 + i)
        assert len(set(rows)) == 1, f"document {i} was split across windows"
        assert len(cols) == len(doc) and np.all(np.diff(cols) == 1)
        # a document is one segment of its own (the filler prose another)
        row, own = rows[0], segments[rows[0], cols[0]]
        np.testing.assert_array_equal(np.nonzero(segments[row] == own)[0], cols)
    assert np.all(np.diff(segments, axis=1) >= 0) and np.all(segments[:, 0] == 0)
    assert not np.any(windows == 0), "a window holds padding"
    assert set(np.unique(windows[windows < 10])) <= set(range(1, 8))
    again = pack_windows(docs, filler, seq_len=64, seed=0)
    np.testing.assert_array_equal(windows, again.tokens)


def test_pack_windows_carries_reply_masks_and_weights_filler():
    rng = np.random.default_rng(4)
    docs = _docs(rng, 23, 4, 30)
    masks = [[j % 3 == 0 for j in range(len(d))] for d in docs]
    windows, learn, _ = pack_windows(
        docs, [[1, 2, 3]], seq_len=48, seed=1, masks=masks, filler_weight=0.25
    )
    assert learn.dtype == np.float32
    for i, mask in enumerate(masks):
        r, c = np.nonzero(windows == 10 + i)
        np.testing.assert_array_equal(learn[r, c], np.asarray(mask, np.float32))
    assert np.all(learn[windows < 10] == 0.25), "filler prose does not carry its weight"
    with pytest.raises(PackingError, match="one mask entry per document token"):
        pack_windows(docs, [[1]], seq_len=48, seed=1, masks=masks[:-1])
    with pytest.raises(PackingError, match="filler_weight=1.5"):
        pack_windows(docs, [[1]], seq_len=48, seed=1, masks=masks, filler_weight=1.5)


def test_pack_windows_refuses_a_document_longer_than_the_window():
    with pytest.raises(PackingError, match="longer than seq_len=8"):
        pack_windows([[1] * 9], [[2]], seq_len=8, seed=0)


def test_stories_are_deterministic_and_varied():
    a, b = list(stories(seed=5, n=300)), list(stories(seed=5, n=300))
    assert a == b
    assert a != list(stories(seed=6, n=300))
    assert len(set(a)) > 290
    text = " ".join(a)
    # every kind of document shows up (each leaves a mark of its frame)
    for mark in ('"', "Log, ", "How to make", "o'clock", "is quiet on"):
        assert mark in text, mark
    assert len(KINDS) == 5
    with pytest.raises(ValueError, match="n=-1"):
        list(stories(seed=0, n=-1))


def test_builtin_config_is_a_gqa_llama():
    c = builtin_config(vocab_size=4096, special={"bos": 1, "eos": (4,), "pad": 0})
    assert (c.arch, c.n_layers, c.d_model) == ("llama", 6, 256)
    assert c.n_heads == 2 * c.n_kv_heads and c.eos_token_ids == (4,)


def test_model_card_lists_every_training_stage():
    config = builtin_config(vocab_size=512, special={"bos": 1, "eos": (4,), "pad": 0})
    one = {"command": "python3 scripts/train_builtin.py", "steps": 10, "seconds": 100}
    two = {"command": "python3 scripts/train_builtin.py --init m", "steps": 5, "seconds": 50}
    kw = dict(corpus={"Plain text": "3"}, training={"steps": 5}, results={"loss": 1.0})
    assert "runs, each continuing" not in model_card(config, **kw, stages=[one])
    card = model_card(config, **kw, stages=[one, two])
    assert "2 runs, each continuing the previous one (`--init`), 150 s of training" in card
    assert "| command | steps | seconds |" in card
    assert "| python3 scripts/train_builtin.py --init m | 5 | 50 |" in card


@needs_model
def test_shipped_model_is_small_and_complete():
    files = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    size = sum(p.stat().st_size for p in MODEL.iterdir())
    assert size <= 20 * 2**20, f"{size / 2**20:.1f} MiB > 20 MiB"
    card = (MODEL / "README.md").read_text()
    assert "Training data" in card and "What it can do" in card


@needs_model
def test_shipped_model_gives_transformers_logits():
    torch = pytest.importorskip("torch", reason="torch is installed by `pip install -e .[test]`")
    transformers = pytest.importorskip("transformers")
    config, params = jaxlens.load_hf(MODEL, dtype="float32")
    tok = jaxlens.load_tokenizer(MODEL, config=config)
    ids = jaxlens.apply_chat_template(
        tok, [{"role": "user", "content": "Describe a quiet harbour."}]
    )
    tokens = np.asarray([ids], np.int32)
    ours = np.asarray(jaxlens.forward(params, tokens, config=config).logits)
    hf = transformers.AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
    with torch.no_grad():
        theirs = hf(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_train_builtin_refuses_bad_mixes_and_weights_at_parse_time(capsys):
    script = runpy.run_path(str(SCRIPTS / "train_builtin.py"), run_name="train_builtin")
    for argv, expected in (
        (["--persona-mix", "0.5,x,0.5"], "expected comma-separated numbers"),
        (["--persona-mix", "0.5,0.5,0.5"], "summing to 1"),
        (["--game-mix", "0.5,0.5"], "expected 3 shares >= 0"),
        (["--game-mix", "0,0,0"], "not all 0"),
        (["--move-weight", "-1"], "expected a weight >= 0"),
    ):
        with pytest.raises(SystemExit):
            script["parse_args"](argv)
        assert expected in capsys.readouterr().err, argv
    args = script["parse_args"](["--persona-mix", "0.4,0.3,0.2,0.1", "--game-mix", "1,0,1"])
    assert args.persona_mix == (0.4, 0.3, 0.2, 0.1) and args.game_mix == (1.0, 0.0, 1.0)


def test_tokenize_weighs_the_reason_and_move_of_game_replies():
    tok = jaxlens.load_tokenizer(jaxlens.BUILTIN_MODEL)
    conv = [
        {"role": "user", "content": "Board: 0 | 1 | 2"},
        {"role": "assistant", "content": "Free cells: 0, 2. I take 2. \\boxed{[2]}"},
    ]
    (plain,) = tokenize(tok, {"games": [conv]})["games"]
    (ids, weights) = tokenize(tok, {"games": [conv]}, 6.0)["games"][0]
    assert ids == plain[0] and set(plain[1]) == {0.0, 1.0}
    learned = [tok.decode([t]) for t, w in zip(ids, weights, strict=True) if w == 6.0]
    assert "".join(learned).startswith(" I take 2.") and "2" in learned  # the move itself
    assert (
        "".join(tok.decode([t]) for t, w in zip(ids, weights, strict=True) if w == 1.0)
        == "Free cells: 0, 2."
    )


GENERATORS = {"game_conversations": rl.transcripts.game_conversations, "stories": stories}
# sha256 (first 16 hex digits) of each part's JSON, as scripts/train_builtin.py drew these
# corpora before the recipe moved into jaxlens.builtin.corpus: the same seed, the same corpus.
GOLDEN = {
    "fixed": {"personas": "2efe391cc2119c4a", "games": "6ba4925cd4595350",
              "stories": "12ca266740b5f900"},
    "fresh": {"personas": "589907a23f2e1813", "games": "e06328ebe42cd193",
              "stories": "bc779d8257e5c220"},
    "heldout": {"personas": "b7d9d746ac5249e4", "games": "5ae9749a65144f50",
                "stories": "284d38e932c88f6e"},
}  # fmt: skip
CASES = {  # (recipe, seed, scale)
    "fixed": (CorpusRecipe(personas=40, games=30, stories=30), 0, 1.0),
    "fresh": (
        CorpusRecipe(
            personas=40,
            games=30,
            stories=30,
            profiles="fresh",
            game_mix=(1.0, 0.0, 2.0),
            persona=persona_settings((0.4, 0.3, 0.2, 0.1), positive_keyed=0.8),
        ),
        3,
        1.0,
    ),  # fmt: skip
    "heldout": (
        CorpusRecipe(
            personas=500, games=500, stories=500, persona=persona_settings((0.4, 0.3, 0.2, 0.1))
        ).held_out(),
        1007,
        0.02,
    ),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_corpus_recipe_draws_the_documents_it_always_drew(case):
    recipe, seed, scale = CASES[case]
    parts = build_corpus(recipe, seed=seed, scale=scale, **GENERATORS)
    digest = {
        k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16]
        for k, v in parts.items()
    }
    assert digest == GOLDEN[case]


def test_corpus_recipe_is_deterministic_and_mixes_every_part():
    calls = []

    def games(*, seed, games, n):
        calls.append((seed, games, n))
        return [[{"role": "user", "content": f"{games[0]} {seed} {i}"}] for i in range(n)]

    fake = {"game_conversations": games, "stories": lambda *, seed, n: [f"s{seed}"] * n}
    recipe = CorpusRecipe(personas=20, games=12, stories=10, game_mix=(1.0, 1.0, 2.0))
    a = build_corpus(recipe, seed=2, **fake)
    assert calls == [(2, ("tictactoe",), 3), (3, ("kuhn_poker",), 3), (4, ("negotiation",), 6)]
    assert [len(a[k]) for k in ("personas", "games", "stories")] == [20, 12, 10]
    assert a["stories"] == ["s2"] * 10
    assert all(c[-1]["role"] == "assistant" for c in a["personas"])  # persona replies
    assert build_corpus(recipe, seed=2, **fake) == a
    assert build_corpus(recipe, seed=5, **fake)["personas"] != a["personas"]
    small = build_corpus(recipe, seed=2, scale=0.01, **fake)  # each part keeps one document
    assert [len(small[k]) for k in ("personas", "stories")] == [1, 1] and calls[-1][2] == 1
    # the held-out documents skip the curriculum knobs
    curriculum = CorpusRecipe(persona=persona_settings((0.4, 0.3, 0.2, 0.1), 0.9))
    assert curriculum.held_out().persona == PERSONA_CORPUS
    assert curriculum.held_out().personas == curriculum.personas


def test_corpus_recipe_refuses_bad_settings():
    for kw, match in (
        ({"game_mix": (0.5, 0.5)}, "expected 3 shares >= 0"),
        ({"game_mix": (0.0, 0.0, 0.0)}, "not all 0"),
        ({"profiles": "random"}, "profiles='random'"),
        ({"stories": -1}, "stories=-1"),
    ):
        with pytest.raises(ValueError, match=match):
            CorpusRecipe(**kw)


def test_pack_corpus_drops_conversations_longer_than_the_window():
    ids = {
        "personas": [([5] * 6, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), ([6] * 20, [1.0] * 20)],
        "games": [([7] * 4, [0.0, 1.0, 1.0, 1.0])],
        "stories": [([1, 2, 3], [1.0] * 3)],
    }
    packed, dropped = pack_corpus(ids, seq_len=12, seed=0, prose_weight=0.5)
    assert dropped == 1 and not np.any(packed.tokens == 6)
    np.testing.assert_array_equal(packed.loss_mask[packed.tokens == 5], [0, 0, 1, 1, 1, 1])
    assert np.all(packed.loss_mask[packed.tokens < 4] == 0.5)
    every, _ = pack_corpus(ids, seq_len=12, seed=0, replies_only=False, prose_weight=0.5)
    assert np.all(every.loss_mask[every.tokens >= 5] == 1.0)


@needs_model
def test_shipped_model_stops_at_the_end_of_turn_and_pads_with_0():
    model = jaxlens.load_model(MODEL)
    tok = model.tokenizer
    assert set(model.stop_tokens) == {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id}
    assert set(model.stop_tokens) == {4, 2} and model.pad_id == 0
