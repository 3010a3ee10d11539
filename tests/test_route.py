"""Intent routing (agent/route.py): auto mode creates only when the message asks for a scenario."""

from __future__ import annotations

import pytest

from agent.route import INTENTS, route

LOADED = {"title": "Code Dark", "roles": [{"name": "Incident Commander", "description": "Leads."}]}

# With no scenario loaded: create only when a scenario is asked for, otherwise chat.
NO_SCENARIO = [
    # The page's own suggestions and small talk must not invent a scenario.
    ("Explain this scenario", "chat"),
    ("hello", "chat"),
    ("hi there!", "chat"),
    ("thanks", "chat"),
    ("help", "chat"),
    ("what can you do?", "chat"),
    ("what is a tabletop exercise?", "chat"),
    ("What's the difference between a drill and a simulation?", "chat"),
    ("how long should a tabletop exercise take?", "chat"),
    ("how do I create a scenario?", "chat"),
    ("what makes a good scenario?", "chat"),
    ("Who should play the commander?", "chat"),
    ("make it harder", "chat"),
    ("add a role for a journalist", "chat"),
    ("anything at all", "chat"),
    ("a flood", "chat"),
    ("Do I need a facilitator?", "chat"),
    ("tell me about role-plays", "chat"),
    # Asking for one: a verb and a scenario noun, a topic phrase, or a fresh start.
    ("create a scenario about a flood", "create"),
    ("Create a scenario about a warehouse fire evacuation drill", "create"),
    ("make a tabletop exercise on phishing", "create"),
    ("Build me a drill for a chemical spill", "create"),
    ("generate a simulation of a hospital power cut", "create"),
    ("Design an advanced role-play with an angry customer", "create"),
    ("write a new scenario", "create"),
    ("draft an exercise about a data-center fire", "create"),
    ("set up a fire drill for the warehouse", "create"),
    ("please can you create a short negotiation role-play?", "create"),
    ("I'd like you to make a scenario about an earthquake", "create"),
    ("I want a role-play about a customer complaint", "create"),
    ("I need a drill for the night shift", "create"),
    ("Give me an exercise on ransomware", "create"),
    ("let's run a fire drill", "create"),
    ("How about a scenario on phishing?", "create"),
    ("What about a tabletop exercise for a flood?", "create"),
    ("a scenario about a supplier price increase", "create"),
    ("scenario on a medical emergency in a care home", "create"),
    ("new scenario", "create"),
    ("start over from scratch", "create"),
    ("create one about floods", "create"),
    ("Generate something about a cyberattack", "create"),
]

# With a scenario loaded: as before, except questions are never edits.
LOADED_CASES = [
    ("Explain this scenario", "explain"),
    ("walk me through it", "explain"),
    ("what is this scenario about?", "explain"),
    ("Create a scenario about a flood", "create"),
    ("make a new exercise about a data breach", "create"),
    ("start over with a new scenario", "create"),
    ("Add a role called Safety Officer", "modify"),
    ("add a role for a journalist", "modify"),
    ("rename it to Blue Harbor", "modify"),
    ("make it harder", "modify"),
    ("can you remove step 2?", "modify"),
    ("create a new role called Scribe", "modify"),
    ("make the scenario harder", "modify"),
    ("Who should play the CEO?", "chat"),
    ("what should the commander do first?", "chat"),
    ("which step is the hardest?", "chat"),
    ("how do I add a role?", "chat"),
    ("what should I change?", "chat"),
    ("is it too hard?", "chat"),
    ("hello", "chat"),
]


@pytest.mark.parametrize("message, intent", NO_SCENARIO)
def test_auto_without_a_scenario(message, intent):
    assert route("auto", message, None) == intent


@pytest.mark.parametrize("message, intent", LOADED_CASES)
def test_auto_with_a_scenario(message, intent):
    assert route("auto", message, LOADED) == intent


def test_the_table_is_large_and_covers_both_answers():
    assert len(NO_SCENARIO) >= 30
    assert {intent for _, intent in NO_SCENARIO} == {"chat", "create"}


@pytest.mark.parametrize("mode", INTENTS)
def test_an_explicit_mode_always_wins(mode):
    assert route(mode, "create a scenario about a flood", None) == mode
    assert route(mode, "hello", LOADED) == mode


def test_routing_is_local_and_fast():
    import time

    messages = [message for message, _ in NO_SCENARIO + LOADED_CASES] * 20
    start = time.perf_counter()
    for message in messages:
        route("auto", message, None)
        route("auto", message, LOADED)
    per_call_ms = (time.perf_counter() - start) * 1000 / (2 * len(messages))
    assert per_call_ms < 1.0, per_call_ms  # measured ~0.01 ms; no model call, no I/O


# Held-out editing phrasings, written before the router learnt editing verbs: each asks to
# change a part of the loaded scenario with a verb other than add/remove/set/change, and
# must reach modify in auto mode, never chat or explain.
EDITING_VERBS = [
    "reword step 2's description",
    "rephrase the summary",
    "shorten the setting",
    "expand the objectives",
    "rewrite the summary so it sounds more formal",
    "simplify the setting",
    "tighten up the summary",
    "trim the description of step 4",
    "condense the objectives into three",
    "lengthen the setting a little",
    "flesh out step 3",
    "tweak the title",
    "polish the overview",
    "revise the objectives",
    "clarify the CISO's description",
    "tone down the ransom note",
    "beef up the roles",
    "move step 5 before step 3",
    "reorder the steps",
    "merge steps 2 and 3",
    "split step 4 into two steps",
    "combine the first two objectives",
    "fix the typos in the summary",
    "correct the setting: it is a 300-bed hospital",
    "adjust the duration to 90 minutes",
    "translate the summary into French",
    "capitalize the role names",
    "turn the summary into bullet points",
    "Could you rephrase step 1?",
    "Please reword the objectives so they are measurable",
    "cut the setting down to one sentence",
    "swap the order of steps 3 and 4",
]


@pytest.mark.parametrize("message", EDITING_VERBS)
def test_editing_verbs_route_to_modify(message):
    assert route("auto", message, LOADED) == "modify"


def test_the_editing_set_is_large_enough():
    assert len(set(EDITING_VERBS)) >= 30


# Questions about editing stay chat, and a question about one part of the scenario is
# answered as chat (the explain intent explains the whole scenario).
QUESTIONS_STAY_QUESTIONS = [
    ("how do I shorten the setting?", "chat"),
    ("should I reword the summary?", "chat"),
    ("what does rephrase mean?", "chat"),
    ("why did you expand the objectives?", "chat"),
    ("Tell me about the Incident Commander", "chat"),
    ("explain step 2", "chat"),
    ("describe the third step", "chat"),
    ("summarize this in one sentence", "chat"),
    ("Explain this scenario", "explain"),
    ("give me an overview", "explain"),
    ("summarize the scenario", "explain"),
]


@pytest.mark.parametrize("message, intent", QUESTIONS_STAY_QUESTIONS)
def test_questions_about_edits_and_parts_stay_chat(message, intent):
    scenario = {**LOADED, "steps": [{"title": "Detection", "description": "A."}, {"title": "Containment", "description": "B."},
                                    {"title": "Recovery", "description": "C."}]}
    assert route("auto", message, scenario) == intent
