"""Open-ended replies whose words, attitude and length follow a Big Five profile.

`open_reply(instruction_index, profile, rng)` builds a reply from a topic sentence and one
sentence per trait whose level is not 3, each drawn from a pool for that trait and level, so
every trait is readable from the text on its own:

- EXT: high levels exclaim, mention friends and crowds, and add a sentence (longer replies);
  low levels keep to themselves, quiet and short.
- AGR: high levels are warm to the reader ("I hope this helps"); low levels are blunt.
- CSN: high levels number or order their sentences ("First, ..."); low levels trail off.
- EST: high levels are calm and sure; low levels worry about what could go wrong.
- OPN: the topic sentence is the imaginative or the plain version; high levels add an idea.
"""

from __future__ import annotations

import numpy as np

from jaxlens.builtin.rng import pick
from jaxlens.personality.items import TRAITS

# (plain, imaginative) topic sentences, one pair per `INSTRUCTIONS` entry.
TOPICS = (
    ("I would clean the house and watch the usual shows.",
     "I would wander somewhere new and sketch whatever surprises me."),
    ("Learn the rules and do the job the way it is done.",
     "Ask why things work as they do and bring a fresh idea or two."),
    ("Hello, I live next door. Welcome to the street.",
     "Hello, neighbour! Our street is a small universe and you are its newest star."),
    ("I would book a hotel I know and visit the main sights.",
     "I would pick a place I cannot pronounce and follow my curiosity."),
    ("I stay inside and do the normal chores.",
     "I listen to the rain like music and invent stories about the clouds."),
    ("Buy a cake and sing the usual song.",
     "Plan a treasure hunt with riddles about their life."),
    ("Maybe fishing. It is simple and practical.",
     "Glassblowing, or astronomy, or writing strange poems."),
    ("Read the book and repeat the answers.",
     "Draw maps of the ideas and connect them in new ways."),
    ("Potatoes and meat, the same as always.",
     "A spiced soup from a far-off recipe, with flowers on the plates."),
    ("There is a meeting at the hall on Friday. Come if you want.",
     "Come to the hall on Friday for an evening of music, stories and surprises!"),
)  # fmt: skip

# POOLS[trait][level] for levels 1, 2, 4, 5 (level 3 adds nothing).
POOLS = {
    "EXT": {
        1: (
            "I would rather be alone for this.",
            "I keep it quiet and stay at home.",
            "No crowds for me, just silence.",
        ),
        2: (
            "I prefer a small, quiet group.",
            "I would not say much about it.",
            "A calm time on my own suits me.",
        ),
        4: (
            "It is nicer with friends around!",
            "I would tell everyone about it!",
            "Bring people along, it is more fun!",
        ),
        5: (
            "Invite the whole crowd, the more people the better!",
            "I would talk to everyone there and make new friends!",
            "Let's make it loud and lively with lots of people!",
        ),
    },
    "AGR": {
        1: (
            "Figure the rest out yourself.",
            "Do not expect me to care.",
            "If you get it wrong, that is your problem.",
        ),
        2: (
            "That is all I will say.",
            "Do it properly or do not bother.",
            "I have better things to do than explain more.",
        ),
        4: (
            "I hope this helps you.",
            "Be kind to yourself along the way.",
            "Happy to help if you need anything.",
        ),
        5: (
            "I really hope this helps you, my friend, and I am glad to share it.",
            "Please take care, and tell me if I can help in any way.",
            "You deserve the best, and I am always here for you.",
        ),
    },
    "CSN": {
        1: (
            "or whatever, I never plan it.",
            "I'll sort out the details later, maybe.",
            "I usually forget half of it anyway.",
        ),
        2: (
            "I don't really plan it much.",
            "It gets done when it gets done.",
            "I might skip a step or two.",
        ),
        4: (
            "I make a plan first and follow it.",
            "I check everything is ready in advance.",
            "I keep a list so nothing is missed.",
        ),
        5: (
            "First I write a careful schedule, then I follow it step by step.",
            "I prepare every detail in advance and check it twice.",
            "Everything is planned, listed and done on time.",
        ),
    },
    "EST": {
        1: (
            "I worry so much that it will all go wrong.",
            "Honestly, this makes me really anxious.",
            "I get upset just thinking about it.",
        ),
        2: (
            "I am a little nervous about it.",
            "I hope nothing goes wrong.",
            "It could easily get stressful.",
        ),
        4: ("I feel relaxed about it.", "No need to worry.", "It will be fine."),
        5: (
            "I stay completely calm, whatever happens.",
            "Nothing about it worries me at all.",
            "I am perfectly at ease with it.",
        ),
    },
    "OPN": {
        1: ("Keep it simple, no fancy ideas.", "The usual way is good enough."),
        2: ("Nothing unusual needed.", "I like the familiar way."),
        4: ("It might be fun to try something new.", "There is always a new idea to explore."),
        5: (
            "Imagine all the strange and wonderful ways it could go!",
            "I love to dream up new ideas, the odder the better.",
        ),
    },
}


def open_reply(instruction: int, profile, rng: np.random.Generator) -> str:
    """A reply to `INSTRUCTIONS[instruction]` written by a persona with `profile` (levels)."""
    level = dict(zip(TRAITS, (int(v) for v in profile), strict=True))
    topic = TOPICS[instruction][1 if level["OPN"] >= 4 else 0]
    if level["OPN"] == 3:
        topic = TOPICS[instruction][int(rng.integers(2))]
    sentences = [topic]
    for trait in ("OPN", "EXT", "EST", "AGR"):
        if level[trait] != 3:
            sentences.append(pick(rng, POOLS[trait][level[trait]]))
    if level["EXT"] == 5:
        sentences.insert(1, pick(rng, POOLS["EXT"][4]))
    csn = level["CSN"]
    if csn != 3:
        tail = pick(rng, POOLS["CSN"][csn])
        sentences.insert(1 if csn >= 4 else len(sentences), tail[0].upper() + tail[1:])
    if csn == 5:
        return "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, start=1))
    if csn == 4:
        sentences[0] = "First: " + sentences[0]
    return " ".join(sentences)
