"""Toy recovery: every architecture finds a known sparse dictionary.

256 random unit directions in D = 64 (4x more directions than dimensions), about 5 active per
sample with magnitudes in [0.5, 1.5]; an SAE with 512 latents must learn decoder rows close to
every true direction: mean over true directions of the best cosine with a learned row > 0.9.
The same data and budget for all (batch 512, lr 3e-3); only the sparsity knobs differ.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _toy import mean_max_cosine, toy_activations, toy_dictionary

import sae

SETTINGS = {
    "topk": (1000, dict(k=5)),
    "batchtopk": (1500, dict(k=5, dead_tokens_threshold=25_600)),
    "relu": (1500, dict(l1_coefficient=0.3)),
    "jumprelu": (
        1500,
        dict(l0_coefficient=0.03, jumprelu_init_threshold=0.1, jumprelu_bandwidth=0.1),
    ),
}


@pytest.fixture(scope="module")
def toy():
    dictionary = toy_dictionary(256, 64)
    return dictionary, toy_activations(dictionary, 100_000, active=5.0)


@pytest.mark.parametrize("arch", sorted(SETTINGS))
def test_recovers_known_dictionary(arch, toy):
    dictionary, x = toy
    steps, kwargs = SETTINGS[arch]
    config = sae.SAEConfig(d_in=64, d_sae=512, architecture=arch, **kwargs)
    options = sae.FitOptions(sparsity_warmup_steps=steps // 10, log_every=steps)
    params = sae.fit(
        x, config, key=jax.random.key(0), steps=steps, batch_size=512, lr=3e-3, options=options
    )
    score = mean_max_cosine(np.asarray(params["W_dec"]), dictionary)
    assert score > 0.9, f"{arch}: mean max cosine {score:.3f}"
    m = sae.metrics(params, x[:8192], config=config)
    assert m.fvu < 0.5 and m.l0 < 20, m  # the inference rule is sparse and reconstructs
