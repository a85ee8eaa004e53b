"""Streamer privacy: stable pseudonyms ("Amber Heron") in place of agent names in everything published.

A pseudonym is picked by a salted hash of the agent id, so the same id gets the same pseudonym in every run
with the same salt; the rare collision is told apart by a number, in order of first use.
"""

from __future__ import annotations

import hashlib

ADJECTIVES = (
    "amber",
    "brisk",
    "calm",
    "dapper",
    "eager",
    "fabled",
    "gentle",
    "hazel",
    "idle",
    "jolly",
    "keen",
    "lucky",
    "mellow",
    "nimble",
    "olive",
    "plucky",
    "quiet",
    "rosy",
    "sunny",
    "tidy",
    "umber",
    "velvet",
    "witty",
    "young",
    "zesty",
    "bold",
    "crisp",
    "dusky",
    "frosty",
    "golden",
    "merry",
    "silver",
)
ANIMALS = (
    "heron",
    "otter",
    "badger",
    "finch",
    "lynx",
    "marten",
    "newt",
    "owl",
    "puffin",
    "quail",
    "raven",
    "stoat",
    "toad",
    "vole",
    "wren",
    "yak",
    "zebra",
    "beaver",
    "crane",
    "dingo",
    "egret",
    "ferret",
    "gecko",
    "hare",
    "ibis",
    "jackal",
    "koala",
    "lemur",
    "moose",
    "narwhal",
    "ocelot",
    "panda",
)


class Pseudonyms:
    """Agent id -> pseudonym, stable for the run."""

    def __init__(self, salt: str) -> None:
        self.salt = salt
        self.names: dict[str, str] = {}
        self._taken: set[str] = set()

    def of(self, agent_id: str) -> str:
        """The pseudonym of an agent id (assigned on first use)."""
        name = self.names.get(agent_id)
        if name is not None:
            return name
        h = int.from_bytes(hashlib.blake2b(f"{self.salt}:{agent_id}".encode(), digest_size=8).digest(), "big")
        base = f"{ADJECTIVES[h % len(ADJECTIVES)].title()} {ANIMALS[(h // len(ADJECTIVES)) % len(ANIMALS)].title()}"
        name, n = base, 2
        while name in self._taken:
            name, n = f"{base} {n}", n + 1
        self.names[agent_id] = name
        self._taken.add(name)
        return name
