"""`scripts/train_sae.py` end to end on a tiny random model, on an 8-device mesh: the model's
weights and the SAEs share the mesh, so the spliced evaluation after training runs (it used to
stop on weights left on one device)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from sae import stories

REPO = Path(__file__).resolve().parents[2]


def test_train_sae_script_on_a_mesh(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(" ".join(stories.stories(seed=0, n=40)), encoding="utf-8")
    out = tmp_path / "run"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    cmd = [sys.executable, "scripts/train_sae.py", "--tiny", "--data", str(text), "--layers",
           "0", "1", "--arch", "topk", "--k", "4", "--expansion", "2", "--steps", "4",
           "--batch-size", "64", "--seq-len", "32", "--buffer-tokens", "256",
           "--mesh", "data=2,fsdp=2,tensor=2", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads((out / "summary.json").read_text())
    assert [r["layer"] for r in rows] == [0, 1]
    # a random model: the figures are only checked to be the real, finite ones of a k=4 TopK SAE
    assert all(math.isfinite(r["ce_loss_recovered"]) and 0 < r["l0"] <= 4 for r in rows)
    for layer in (0, 1):
        assert (out / f"sae_layer{layer}" / "cfg.json").is_file()
