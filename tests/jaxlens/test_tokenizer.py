"""`load_tokenizer`, `apply_chat_template`, `check_vocab`, `left_pad` on a tiny local tokenizer."""

import numpy as np
import pytest

pytest.importorskip("transformers")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from jaxlens.config import ModelConfig  # noqa: E402
from jaxlens.hf.tokenizer import (  # noqa: E402
    ChatTemplateError,
    TokenizerNotFoundError,
    VocabMismatchError,
    apply_chat_template,
    check_vocab,
    left_pad,
    load_tokenizer,
)

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "user", "assistant", ":", "hello", "there", "bye", "|"]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} | "
    "{% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tok.chat_template = TEMPLATE
    path = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(path)
    return path


def test_chat_template_ids(tok_dir):
    tok = load_tokenizer(tok_dir)
    msgs = [{"role": "user", "content": "hello there"}]
    ids = apply_chat_template(tok, msgs)
    want = [WORDS.index(w) for w in "<s> user : hello there | assistant :".split()]
    assert ids == want
    assert apply_chat_template(tok, msgs, add_generation_prompt=False) == want[:-2]


def test_vocab_check(tok_dir):
    small = ModelConfig.tiny(vocab_size=len(WORDS) - 1)
    with pytest.raises(VocabMismatchError, match=f"{len(WORDS)} tokens.*vocab_size is"):
        load_tokenizer(tok_dir, config=small)
    check_vocab(load_tokenizer(tok_dir), ModelConfig.tiny(vocab_size=len(WORDS)))


def test_errors(tok_dir, tmp_path):
    with pytest.raises(TokenizerNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        load_tokenizer(tmp_path / "empty")
    tok = load_tokenizer(tok_dir)
    with pytest.raises(ChatTemplateError, match=r"messages\[0\]"):
        apply_chat_template(tok, [{"text": "hello"}])
    tok.chat_template = None
    with pytest.raises(ChatTemplateError, match="no chat_template"):
        apply_chat_template(tok, [{"role": "user", "content": "hello"}])


def test_left_pad():
    tokens, mask = left_pad([[5, 6, 7], [8], []], pad_id=0)
    np.testing.assert_array_equal(tokens, [[5, 6, 7], [0, 0, 8], [0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert tokens.dtype == np.int32 and left_pad([[1]], 0, length=4)[0].shape == (1, 4)
    with pytest.raises(ValueError, match="length=2"):
        left_pad([[1, 2, 3]], 0, length=2)


def test_train_tokenizer_round_trips_through_load_tokenizer(tmp_path):
    from jaxlens.hf import SPECIAL_TOKENS, train_tokenizer

    text = "the keeper wrote the weather in a small green book every evening.\n" * 20
    trained = train_tokenizer([text], vocab_size=300, path=tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert len(loaded) == len(trained) <= 300
    assert [loaded.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(5))
    ids = loaded.encode("the keeper wrote", add_special_tokens=False)
    assert loaded.decode(ids) == "the keeper wrote"
    chat = apply_chat_template(loaded, [{"role": "user", "content": "hi"}])
    assert chat[0] == loaded.convert_tokens_to_ids("<|im_start|>")
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_tokenizer([text], vocab_size=100)
