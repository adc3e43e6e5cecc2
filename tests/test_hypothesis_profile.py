"""The CI hypothesis profile is what the suite's reproducibility rests on: check its settings
and that `CI` selects it (in a fresh interpreter, as pytest's own start-up would)."""

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).resolve().parent


def test_ci_profile_is_derandomized_with_fixed_examples():
    ci = settings.get_profile("ci")
    assert ci.derandomize is True
    assert ci.deadline is None
    assert ci.database is None
    assert ci.max_examples == 50


def test_ci_environment_variable_loads_the_profile():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import conftest; "
        "from hypothesis import settings; s = settings.default; "
        "print(s.derandomize, s.max_examples, s.deadline)"
    )
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(TESTS)],
        capture_output=True, text=True, env={**env, "CI": "1"}, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["True", "50", "None"]
