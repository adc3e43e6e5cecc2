"""scripts/spiral_eval.py on the built-in model, at its smallest: games against random, the
reasoning benchmark (the bundled set), and the Kuhn Poker strategy section land in the run
folder."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

import jaxlens

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "spiral_eval.py"

pytestmark = pytest.mark.skipif(
    not (Path(jaxlens.BUILTIN_MODEL) / "model.safetensors").exists(),
    reason=f"no built-in model at {jaxlens.BUILTIN_MODEL}: run scripts/train_builtin.py",
)


def test_spiral_eval_writes_games_reasoning_and_the_kuhn_strategy(tmp_path):
    main = runpy.run_path(str(SCRIPT), run_name="spiral_eval")["main"]
    args = "--games kuhn_poker --opponents random --slots 2 --games-per-slot 1"
    args += " --reasoning-items 2 --strategy-samples 2"
    main([*args.split(), "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "games.json").read_text())
    assert {r["role"] for r in rows} == {0, 1, "all"} and rows[-1]["n"] == 2
    (bench,) = json.loads((tmp_path / "reasoning.json").read_text())["benchmarks"]
    assert (bench["name"], bench["questions"], len(bench["replies"])) == ("arithmetic", 2, 2)
    strategy = json.loads((tmp_path / "kuhn_poker_strategy.json").read_text())
    table = np.array(strategy["table"])
    assert table.shape == (4, 3) and ((0 <= table) & (table <= 1)).all()
    report = (tmp_path / "report.md").read_text()
    assert "## Kuhn Poker strategy" in report and "| policy |" in report and "| Nash |" in report
