"""The paper's inputs: the well-known roster, Alpaca-format instructions, the presets' probe
regression, and how the script wires them into the study's settings."""

import json
import runpy
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import jaxlens
import jaxlens.personality as P
from jaxlens.personality import activations

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "..."},
    {"instruction": "Translate the sentence.", "input": "Good morning.", "output": "..."},
    {"instruction": "Name a colour.", "output": "Blue."},
    {"instruction": "Write a haiku about rain.", "input": "", "output": "..."},
]


def test_well_known_roster_is_the_default_for_other_models():
    roster = P.well_known_roster()
    franchises = Counter(c.franchise for c in roster)
    assert len(roster) >= 400 and len(franchises) >= 38
    assert len({(c.character, c.franchise) for c in roster}) == len(roster)
    assert all(c.description is None and c.profile is None for c in roster)
    assert P.default_roster("/some/llama") == roster
    assert P.default_roster(jaxlens.BUILTIN_MODEL) == P.bundled_roster()


@pytest.mark.parametrize("lines", [False, True])
def test_load_instructions_reads_alpaca_json_and_jsonl(tmp_path, lines):
    path = tmp_path / ("alpaca.jsonl" if lines else "alpaca.json")
    text = "\n".join(json.dumps(r) for r in ALPACA) if lines else json.dumps(ALPACA)
    path.write_text(text)
    every = P.load_instructions(path, 4, seed=0)
    assert sorted(every) == sorted(
        ["Give three tips for staying healthy.", "Translate the sentence.\n\nGood morning.",
         "Name a colour.", "Write a haiku about rain."]
    )  # fmt: skip
    two = P.load_instructions(path, 2, seed=1)
    assert two == P.load_instructions(path, 2, seed=1) and set(two) <= set(every)
    assert {P.load_instructions(path, 2, seed=s) for s in range(6)} != {two}  # the seed draws
    with pytest.raises(P.InstructionsError, match="asked for 5 of 4"):
        P.load_instructions(path, 5)


def test_load_instructions_names_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"input": "no instruction"}]))
    with pytest.raises(P.InstructionsError, match="entry 0 needs a non-empty 'instruction'"):
        P.load_instructions(bad, 1)
    with pytest.raises(FileNotFoundError, match="no file"):
        P.load_instructions(tmp_path / "missing.json")


def test_script_paper_settings_with_an_instructions_file(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(ALPACA))
    script = runpy.run_path(str(SCRIPTS / "personality_study.py"), run_name="personality_study")
    args = script["parse_args"](["--paper", "--instructions", str(path), "--n-instructions", "3"])
    config = script["study_config"](args)
    assert config.method == "score_mean" and config.sample.items_per_trait is None
    assert config.sample.instructions == 3 and len(config.sample.instruction_texts) == 3
    assert set(config.sample.instruction_texts) <= set(P.load_instructions(path, 4))
    ridge = script["study_config"](script["parse_args"](["--paper", "--method", "ridge"]))
    assert ridge.method == "ridge" and ridge.sample.instruction_texts == P.INSTRUCTIONS
    assert script["study_config"](script["parse_args"]([])).method == "ridge"


def test_sampling_prompts_ask_the_given_instructions():
    texts = ("Plan a picnic.", "Describe a cat.")
    config = activations.SampleConfig(texts=texts, instructions=2, adjective_instructions=1)
    convs, rows = activations.build_prompts(np.full((2, 50), 3), config)
    asked = [c[-1]["content"] for c, r in zip(convs, rows, strict=True) if r["kind"] == "persona"]
    assert asked == list(texts) * 2
    with pytest.raises(ValueError, match="instructions: expected 1..2"):
        activations.SampleConfig(texts=texts, instructions=3)
