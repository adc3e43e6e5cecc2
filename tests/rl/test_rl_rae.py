"""Role-conditioned advantages on a hand-worked sequence of games, and the ablations."""

import numpy as np
import pytest

from rl import rae

RETURNS = [1.0, -1.0, 1.0, -1.0, 0.5]
GAMES = ["kuhn", "kuhn", "kuhn", "ttt", "kuhn"]
ROLES = [0, 1, 0, 0, 0]


def test_role_baselines_by_hand():
    # kuhn/0: b 0 -> A 1, b .05 | kuhn/1: A -1, b -.05 | kuhn/0: A 1 - .05 = .95,
    # b .95*.05 + .05 = .0975 | ttt/0: A -1, b -.05 | kuhn/0: A .5 - .0975 = .4025,
    # b .95*.0975 + .025 = .117625
    adv, base = rae.advantages(RETURNS, GAMES, ROLES, {})
    np.testing.assert_allclose(adv, [1.0, -1.0, 0.95, -1.0, 0.4025], rtol=1e-6)
    assert base == pytest.approx({("kuhn", 0): 0.117625, ("kuhn", 1): -0.05, ("ttt", 0): -0.05})


def test_existing_baselines_are_used_and_not_modified():
    start = {("ttt", 0): 0.4}
    adv, base = rae.advantages([1.0], ["ttt"], [0], start, alpha=0.5)
    assert adv.tolist() == pytest.approx([0.6])
    assert base[("ttt", 0)] == pytest.approx(0.7)
    assert start == {("ttt", 0): 0.4}


def test_ablations():
    adv, base = rae.advantages(RETURNS, GAMES, ROLES, {}, baseline="none")
    np.testing.assert_allclose(adv, RETURNS)
    assert base == {}
    # one global EMA: b .05 -> -.0025 -> .047625 -> -.00475625 ...
    adv, base = rae.advantages(RETURNS, GAMES, ROLES, {}, baseline="global")
    b, want = 0.0, []
    for r in RETURNS:
        want.append(r - b)
        b = 0.95 * b + 0.05 * r
    np.testing.assert_allclose(adv, want, rtol=1e-6)
    np.testing.assert_allclose(adv[:3], [1.0, -1.05, 1.0025], rtol=1e-6)
    assert base == pytest.approx({rae.GLOBAL_KEY: b})


def test_bad_input():
    with pytest.raises(ValueError, match="equal lengths"):
        rae.advantages([1.0], ["a", "b"], [0], {})
    with pytest.raises(ValueError, match="alpha"):
        rae.advantages([1.0], ["a"], [0], {}, alpha=1.5)
    with pytest.raises(ValueError, match="baseline"):
        rae.advantages([1.0], ["a"], [0], {}, baseline="critic")
