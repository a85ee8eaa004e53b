"""`townlet console URL COMMAND key=value …`: every command's command-line form types its values by its schema."""

from __future__ import annotations

from typing import Any

import pytest

from townlet.cli.console_cmd import parse_pairs
from townlet.console import REGISTRY

# Each command as an operator types it on the command line, and the arguments the server must receive.
CLI_FORMS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "act": (["agent=agent_1", "option=GetFed"], {"agent": "agent_1", "option": "GetFed"}),
    "agent": (["agent=007"], {"agent": "007"}),
    "arrange_meet": (
        ["agents=agent_1,agent_4", "place=cafe", "duration=80"],
        {"agents": ["agent_1", "agent_4"], "place": "cafe", "duration": 80},
    ),
    "blackout": (["state=on", "place=home_1"], {"state": "on", "place": "home_1"}),
    "force_chat": (["agent=agent_0", "other=agent_1"], {"agent": "agent_0", "other": "agent_1"}),
    "health": ([], {}),
    "help": (["command=teleport"], {"command": "teleport"}),
    "kill": (["agent=agent_2", "note=10:00 on"], {"agent": "agent_2", "note": "10:00 on"}),
    "narrate": (["text=The mayor waves.", "agent=agent_1"], {"text": "The mayor waves.", "agent": "agent_1"}),
    "outage": (["utility=water", "state=off", "ticks=40"], {"utility": "water", "state": "off", "ticks": 40}),
    "pause": (["on=false"], {"on": False}),
    "perturbation_cancel": (["id=3"], {"id": 3}),
    "perturbation_trigger": (
        ["kind=price_spike", "item=raw_food", "magnitude=1.5", "duration=200"],
        {"kind": "price_spike", "item": "raw_food", "magnitude": 1.5, "duration": 200},
    ),
    "perturbations": (["state=off"], {"state": "off"}),
    "policy": (["op=swap", "ref=12345678"], {"op": "swap", "ref": "12345678"}),  # a hash stays a word
    "possess": (["agent=agent_3"], {"agent": "agent_3"}),
    "price": (["item=raw_food", "price=2"], {"item": "raw_food", "price": 2}),
    "rain": (["state=start"], {"state": "start"}),
    "reload": ([], {}),
    "set_exit_cap": (["per_day=3"], {"per_day": 3}),
    "set_rel": (
        ["agent=agent_0", "other=agent_1", "trust=-0.5", "both_ways=yes"],
        {"agent": "agent_0", "other": "agent_1", "trust": -0.5, "both_ways": True},
    ),
    "set_spawn_delay": (["low=5", "high=20"], {"low": 5, "high": 20}),
    "setneed": (["agent=agent_2", "need=hunger", "value=0.9"], {"agent": "agent_2", "need": "hunger", "value": 0.9}),
    "snapshot": (["op=save", "file=noon.snap"], {"op": "save", "file": "noon.snap"}),
    "spawn": (
        ["agent=visitor", "x=16", "y=11", "needs={hunger: 0.5}"],
        {"agent": "visitor", "x": 16, "y": 11, "needs": {"hunger": 0.5}},
    ),
    "speed": (["value=100x"], {"value": "100x"}),
    "status": ([], {}),
    "teleport": (["agent=agent_1", "x=3", "y=4", "force=true"], {"agent": "agent_1", "x": 3, "y": 4, "force": True}),
    "toggle_mortality": (["on=off"], {"on": False}),
    "unpossess": (["agent=agent_3"], {"agent": "agent_3"}),
}


def test_every_registered_command_has_a_command_line_form() -> None:
    """The table of command-line forms names exactly the registered commands."""
    assert set(CLI_FORMS) == set(REGISTRY.names())


@pytest.mark.parametrize("name", sorted(CLI_FORMS))
def test_command_line_form_types_values_by_the_argument_schema(name: str) -> None:
    """`key=value` words become the typed arguments the command's own schema accepts."""
    words, expected = CLI_FORMS[name]
    args = parse_pairs(words, None, name)
    assert args == expected
    REGISTRY.commands[name].parse(args)  # the server-side validation accepts them (raises otherwise)


def test_word_values_stay_words_only_where_the_field_takes_a_word() -> None:
    """`state=on` is the word on for blackout, while `on=on` is a boolean for pause; unknown keys read as YAML."""
    assert parse_pairs(["state=on"], None, "blackout") == {"state": "on"}
    assert parse_pairs(["on=on"], None, "pause") == {"on": True}
    assert parse_pairs(["place=null"], None, "blackout") == {"place": None}
    assert parse_pairs(["extra=on"], None, "blackout") == {"extra": True}  # the server refuses it by name
    assert parse_pairs(["state=on"], None, "no_such_command") == {"state": True}
    assert parse_pairs(["x=ten"], '{"state": "off"}', "teleport") == {"state": "off", "x": "ten"}
    with pytest.raises(ValueError, match="key=value"):
        parse_pairs(["state"], None, "blackout")
