"""A tiny random Llama with a BPE tokenizer trained on game transcripts (for the SPIRAL tests)."""

import functools

import jax

import jaxlens
import rl.transcripts
from jaxlens.hf import train_tokenizer


@functools.cache
def tiny_model(vocab: int = 700, seed: int = 0):
    """(config, params, tokenizer): random weights, a chat tokenizer that knows the prompts."""
    texts = []
    for conv in rl.transcripts.game_conversations(seed=123, n=60):
        texts += [m["content"] for m in conv]
    tokenizer = train_tokenizer(texts, vocab_size=vocab)
    config = jaxlens.ModelConfig.tiny(
        vocab_size=len(tokenizer), max_seq_len=1024, eos_token_ids=(2,), pad_token_id=0
    )
    params = jaxlens.init_params(jax.random.key(seed), config)
    return config, params, tokenizer


def save_tiny(path):
    config, params, tokenizer = tiny_model()
    jaxlens.save_hf(path, config, params)
    tokenizer.save_pretrained(path)
    return path
