"""A tiny random Llama with a tokenizer trained on the persona corpus (for pipeline tests)."""

import itertools

import jax
import pytest

import jaxlens
import jaxlens.personality as P
from jaxlens.builtin import builtin_config
from jaxlens.hf import train_tokenizer


def make_tiny_model(path, *, vocab_size=700, seed=0):
    personas = P.train_personas(P.make_personas(300, seed=0))
    convs = list(itertools.islice(P.persona_conversations(personas, seed=0), 300))
    texts = [m["content"] for c in convs for m in c]
    tok = train_tokenizer(texts, vocab_size=vocab_size, path=path)
    special = {
        "bos": tok.bos_token_id,
        "eos": [tok.convert_tokens_to_ids("<|im_end|>")],
        "pad": tok.pad_token_id,
    }
    config = builtin_config(
        vocab_size=len(tok), d_model=64, n_layers=3, d_ff=128, head_dim=16, special=special
    )
    params = jaxlens.init_params(jax.random.key(seed), config)
    jaxlens.save_hf(path, config, params)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"))
