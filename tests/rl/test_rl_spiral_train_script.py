"""scripts/spiral_train.py's flags on top of the presets: SPIRAL's run by default, the preset's
games and env options kept unless named, evaluation sampling."""

import runpy
from pathlib import Path

import pytest

import jaxlens

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "spiral_train.py"


@pytest.fixture(scope="module")
def script():
    return runpy.run_path(str(SCRIPT), run_name="spiral_train")


def _cfg(script, *argv):
    return script["build_config"](script["parse_args"](list(argv)))


def test_flags_on_the_presets(script):
    cfg = _cfg(script)
    assert cfg.rollout.games == ("kuhn_poker",) and cfg.steps == 400
    assert cfg.rollout.env_options == {"kuhn_poker": {"variant": "spiral_v1"}}
    assert cfg.eval_sampling == jaxlens.Sampling(temperature=0.6, top_p=0.95)
    mixed = _cfg(script, "--games", "tictactoe,kuhn_poker", "--env-option",
                 "kuhn_poker.variant=standard", "--eval-sampling", "train")  # fmt: skip
    assert mixed.rollout.env_options == {"kuhn_poker": {"variant": "standard"}}
    assert mixed.eval_sampling is None
    ttt = _cfg(script, "--games", "tictactoe", "--normalize", "batch_constant")
    assert ttt.rollout.env_options == {} and ttt.ppo.normalize == "batch_constant"
    quick = _cfg(script, "--quick", "--sample-draw", "first", "--eval-sampling", "1,0.9")
    assert quick.sample_draw == "first" and quick.eval_opponents == ("random",)
    assert quick.batch_fill == "once" and cfg.batch_fill == "nonzero"
    assert _cfg(script, "--quick", "--batch-fill", "nonzero").batch_fill == "nonzero"
    assert quick.eval_sampling == jaxlens.Sampling(temperature=1.0, top_p=0.9)
    with pytest.raises(SystemExit):
        _cfg(script, "--eval-sampling", "0.6")
