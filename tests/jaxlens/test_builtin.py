"""The built-in model: its packing, its plain-text corpus, and the shipped HF directory.

The shipped weights are checked as a user would: the directory loads with `jaxlens.load_hf`
and with `transformers`, and both give the same logits; it fits the size promised.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

import jaxlens
from jaxlens.builtin import PackingError, builtin_config, model_card, pack_windows
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


def test_train_builtin_weighs_the_reason_and_move_of_game_replies():
    script = runpy.run_path(str(SCRIPTS / "train_builtin.py"), run_name="train_builtin")
    tok = jaxlens.load_tokenizer(jaxlens.BUILTIN_MODEL)
    conv = [
        {"role": "user", "content": "Board: 0 | 1 | 2"},
        {"role": "assistant", "content": "Free cells: 0, 2. I take 2. \\boxed{[2]}"},
    ]
    (plain,) = script["tokenize"](tok, {"games": [conv]})["games"]
    (ids, weights) = script["tokenize"](tok, {"games": [conv]}, 6.0)["games"][0]
    assert ids == plain[0] and set(plain[1]) == {0.0, 1.0}
    learned = [tok.decode([t]) for t, w in zip(ids, weights, strict=True) if w == 6.0]
    assert "".join(learned).startswith(" I take 2.") and "2" in learned  # the move itself
    assert (
        "".join(tok.decode([t]) for t, w in zip(ids, weights, strict=True) if w == 1.0)
        == "Free cells: 0, 2."
    )
