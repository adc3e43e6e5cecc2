"""`jaxlens.load_model` and its one stop-id rule, on ChatML, Llama 3 and Qwen tokenizers.

Each tokenizer is built here with its family's special tokens and chat template. The check is
the template's own: render an assistant turn, and the token the template writes right after the
reply must be a stop id (a reply that never stops would run to the token cap); no ordinary word
may be one.
"""

import jax
import numpy as np
import pytest

pytest.importorskip("transformers")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

import jaxlens  # noqa: E402
from jaxlens.hf.io import CheckpointNotFoundError  # noqa: E402

WORDS = ["hello", "there", "user", "assistant", "system", "\n", "<unk>"]

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
    "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

FAMILIES = {
    # the built-in model's: ChatML turns, eos </s>
    "chatml": dict(
        specials=["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
        tokens=dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>"),
        template=CHATML,
        end_of_turn="<|im_end|>",
    ),
    # Llama 3 instruct: header tokens, <|eot_id|> ends a turn, eos <|end_of_text|>, no pad
    "llama3": dict(
        specials=[
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
        ],  # fmt: skip
        tokens=dict(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"),
        template=LLAMA3,
        end_of_turn="<|eot_id|>",
    ),
    # Qwen2/3: ChatML turns, <|endoftext|> is both eos and pad
    "qwen": dict(
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        tokens=dict(eos_token="<|endoftext|>", pad_token="<|endoftext|>"),
        template=CHATML,
        end_of_turn="<|im_end|>",
    ),
}


def make_tokenizer(family: str):
    spec = FAMILIES[family]
    vocab = {w: i for i, w in enumerate(spec["specials"] + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", **spec["tokens"])
    tok.add_special_tokens({"additional_special_tokens": spec["specials"]})
    tok.chat_template = spec["template"]
    return tok


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_stop_ids_end_the_templates_assistant_turn(family):
    tok = make_tokenizer(family)
    chat = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "there"}]
    ids = jaxlens.apply_chat_template(tok, chat, add_generation_prompt=False)
    reply = tok.convert_tokens_to_ids("there")
    after_reply = ids[len(ids) - 1 - ids[::-1].index(reply) + 1]
    stops = jaxlens.stop_ids(tok)
    assert after_reply in stops, (family, tok.convert_ids_to_tokens([after_reply]), stops)
    assert tok.convert_tokens_to_ids(FAMILIES[family]["end_of_turn"]) in stops
    assert tok.eos_token_id in stops
    words = {tok.convert_tokens_to_ids(w) for w in WORDS if w != "<unk>"}
    assert not words & set(stops)


def test_stop_ids_add_the_configs_eos_and_refuse_none():
    tok = make_tokenizer("chatml")
    config = jaxlens.ModelConfig.tiny(vocab_size=32).replace(eos_token_ids=(7,))
    assert 7 in jaxlens.stop_ids(tok, config) and 7 not in jaxlens.stop_ids(tok)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    bare = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    with pytest.raises(ValueError, match="no eos token"):
        jaxlens.stop_ids(bare)


def test_pad_id_rule():
    assert jaxlens.hf.tokenizer_pad_id(make_tokenizer("chatml")) == 0  # its <pad>
    llama3 = make_tokenizer("llama3")  # no pad: its eos
    assert jaxlens.hf.tokenizer_pad_id(llama3) == llama3.convert_tokens_to_ids("<|end_of_text|>")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen_like")
    tok = make_tokenizer("qwen")
    config = jaxlens.ModelConfig.tiny("qwen2", vocab_size=len(tok), n_layers=2)
    jaxlens.save_hf(path, config, jaxlens.init_params(jax.random.key(0), config))
    tok.save_pretrained(path)
    return path


def test_load_model_derives_stops_pad_and_placement(model_dir):
    model = jaxlens.load_model(model_dir)
    tok = model.tokenizer
    assert model.path == model_dir and model.mesh is None
    assert model.stop_tokens == jaxlens.stop_ids(tok, model.config)
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.stop_tokens
    assert model.pad_id == tok.convert_tokens_to_ids("<|endoftext|>")
    x = model.put(np.arange(6).reshape(2, 3))
    assert isinstance(x, jax.Array) and x.shape == (2, 3)


def test_load_model_on_a_mesh_shards_weights_and_batches(model_dir):
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
    mesh = jaxlens.sharding.make_mesh(data=2, fsdp=2, devices=jax.devices()[:4])
    model = jaxlens.load_model(model_dir, mesh=mesh)
    plain = jaxlens.load_model(model_dir)
    want = jaxlens.param_shardings(model.config, mesh)
    got = jax.tree.map(lambda x: x.sharding.spec, model.params)
    assert got == jax.tree.map(lambda s: s.spec, want)
    assert any(spec != jax.sharding.PartitionSpec() for spec in jax.tree.leaves(got))
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(plain.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    batch = model.put(np.zeros((4, 8), np.int32))
    assert batch.sharding.spec[0] == ("data", "fsdp")


def test_load_model_names_a_missing_directory(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint directory"):
        jaxlens.load_model(tmp_path / "nope")


def test_a_bare_checkpoint_loads_only_when_asked(tmp_path):
    config = jaxlens.ModelConfig.tiny(n_layers=1)
    jaxlens.save_hf(tmp_path, config, jaxlens.init_params(jax.random.key(1), config))
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        jaxlens.load_model(tmp_path)
    bare = jaxlens.load_model(tmp_path, require_tokenizer=False)
    assert bare.tokenizer is None and bare.config == jaxlens.load_hf(tmp_path)[0]
