"""The Big Five personality study: questionnaire, personas, corpus, scoring, sampling, steering.

Data and formats (`items`, `personas`, `formats`) are shared by the built-in model's training
corpus (`corpus.persona_conversations`) and by the study, which asks the model in exactly the
formats it was trained on. Stages: `scoring`, `activations`, `jaxlens.probes`, `steering`,
orchestrated by `study` (`run_study`); `runtime` batches the prompts and runs the model, a
`jaxlens.LoadedModel` (`jaxlens.load_model`); `plan` is the memory plan at 70B scale.
"""

from jaxlens.personality.corpus import (
    CorpusConfig,
    HeldOutLeakError,
    expected_answer,
    persona_conversations,
)
from jaxlens.personality.formats import parse_likert, parse_picks
from jaxlens.personality.items import (
    ADJECTIVES,
    INSTRUCTIONS,
    IPIP50,
    LEVEL_WORDS,
    LIKERT,
    SELF_STATEMENTS,
    TRAIT_NAMES,
    TRAITS,
    AnswersError,
    InstructionsError,
    Item,
    load_instructions,
    trait_scores,
)
from jaxlens.personality.personas import (
    BUNDLED_ROSTER,
    WELL_KNOWN_ROSTER,
    Character,
    Persona,
    RosterError,
    bundled_roster,
    default_roster,
    describe,
    fresh_personas,
    held_out_personas,
    is_held_out,
    load_roster,
    make_personas,
    make_roster,
    save_roster,
    to_character,
    train_personas,
    well_known_roster,
)


def run_study(model_dir, out_dir, *, roster=None, quick=True, mesh=None, config=None) -> dict:
    """Runs every stage of the study (see `jaxlens.personality.study.run_study`).

    `model_dir`: a checkpoint directory (`jaxlens.load_model`); `mesh`: a mesh or its flag
    spelling `"data=2,fsdp=4"`; `config`: a `study.StudyConfig` (default: `quick()` or the full
    setting). Returns the headline figures.
    """
    # Imported on call: the study pulls in generation, plotting and run folders, which the
    # questionnaire and corpus data above (the built-in model's corpus) never need. It is not a
    # cycle: the study modules import their siblings directly, never this package.
    import jaxlens.personality.study as study

    return study.run_study(model_dir, out_dir, roster=roster, quick=quick, mesh=mesh, config=config)


__all__ = [
    "ADJECTIVES",
    "BUNDLED_ROSTER",
    "INSTRUCTIONS",
    "IPIP50",
    "LEVEL_WORDS",
    "LIKERT",
    "SELF_STATEMENTS",
    "TRAITS",
    "TRAIT_NAMES",
    "WELL_KNOWN_ROSTER",
    "AnswersError",
    "Character",
    "CorpusConfig",
    "HeldOutLeakError",
    "InstructionsError",
    "Item",
    "Persona",
    "RosterError",
    "bundled_roster",
    "default_roster",
    "describe",
    "expected_answer",
    "fresh_personas",
    "held_out_personas",
    "is_held_out",
    "load_instructions",
    "load_roster",
    "make_personas",
    "make_roster",
    "parse_likert",
    "parse_picks",
    "persona_conversations",
    "run_study",
    "save_roster",
    "to_character",
    "train_personas",
    "trait_scores",
    "well_known_roster",
]
