"""`scripts/interp_card_heads.py` (the worked example of docs/interpretability.md) on a tiny
random Llama of the built-in model's shape family (3 layers of 3 heads) with the built-in
model's tokenizer, whose level words are one token each (the tokenizer the personality tests
train in their conftest splits some of them, so their cards do not align): aligned card pairs,
the shapes of the sweep and of the attribution grid, and one grid point of the sweep against a
single head patch."""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxlens
import jaxlens.personality.runtime as runtime
import jaxlens.personality.scoring as scoring
from jaxlens.builtin import builtin_config
from jaxlens.hf import load_tokenizer
from jaxlens.personality.items import TRAITS
from jaxlens.personality.personas import make_roster

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load("interp_card_heads", ROOT / "scripts" / "interp_card_heads.py")


@pytest.fixture(scope="module")
def tiny():
    tok = load_tokenizer(jaxlens.BUILTIN_MODEL)
    special = {"bos": tok.bos_token_id, "eos": [tok.eos_token_id], "pad": tok.pad_token_id}
    config = builtin_config(
        vocab_size=len(tok), d_model=48, n_layers=3, d_ff=96, head_dim=16, special=special
    )
    params = jaxlens.init_params(jax.random.key(0), config)
    return jaxlens.LoadedModel(config=config, params=params, tokenizer=tok)


def test_card_pair_differs_in_one_trait(example):
    base = make_roster(1)[0]
    hi, lo = example.card_pair(base, "AGR", 5, 1)
    assert hi.profile[1] == 5 and lo.profile[1] == 1
    assert [v for i, v in enumerate(hi.profile) if i != 1] == [
        v for i, v in enumerate(lo.profile) if i != 1
    ]
    assert hi.description != lo.description and hi.character == lo.character


def test_sweep_shapes_and_one_site_equals_a_single_patch(example, tiny):
    traits = ("EXT", "OPN")
    pairs = example.card_pairs(tiny.tokenizer, make_roster(1), traits, high=5, low=1)
    r, t = pairs.clean.shape
    assert r == 20 and pairs.corrupted.shape == (r, t) and pairs.mask.shape == (r, t)
    assert (pairs.clean != pairs.corrupted).any(axis=1).all()  # every row differs
    ids = [runtime.token_id(tiny.tokenizer, o) for o in scoring.OPTIONS]
    metric = example.keyed_metric(ids, pairs)
    clean, corrupted = example.endpoints(tiny, pairs, metric)
    assert clean.shape == corrupted.shape == (2,) and np.all((clean >= 1) & (clean <= 5))

    sweep = example.head_sweep(tiny, pairs, metric)
    c = tiny.config
    assert sweep.shape == (c.n_layers, c.n_heads, 2)
    layer, head = c.n_layers - 1, c.n_heads // 2
    single = example.patch_heads(tiny, pairs, metric, [(layer, head)])
    np.testing.assert_allclose(sweep[layer, head], single, atol=1e-5)
    assert not np.allclose(sweep, corrupted)  # patches change the answer

    ext = example.trait_subset(pairs, 0)  # attribution compiles once per trait: one here
    assert ext.traits == ("EXT",) and (ext.trait == 0).all() and len(ext.clean) == 10
    attr = example.head_attribution(tiny, ext, ids)
    assert attr.shape == (c.n_layers, c.n_heads, 1) and np.isfinite(attr).all()
    assert example.top_heads(sweep[..., 0], 3)[0] == np.unravel_index(
        np.argmax(sweep[..., 0]), sweep.shape[:2]
    )


def test_unaligned_cards_are_refused(example, tiny):
    # level 3 reads "moderately <word>": longer than level 1's word in any tokenizer
    with pytest.raises(ValueError, match="tokens"):
        example.card_pairs(tiny.tokenizer, make_roster(1), TRAITS[:1], high=3, low=1)
