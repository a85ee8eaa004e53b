"""Narration categories, their default line templates, the placeholders each may use, and the phrases they fill in.

Templates are ``str.format`` strings; ``narration.templates`` in the config overrides any of them, and an
override may only use its category's placeholders (checked at start-up).
"""

from __future__ import annotations

CATEGORIES = (
    "late_and_blocked",
    "first_clash",
    "bonded_over_lunch",
    "arrival",
    "exit",
    "eviction_notice",
    "price_spike",
    "blackout",
    "water_outage",
    "closed_facility",
    "arranged_meet",
    "restored",
)

TEMPLATES = {
    "late_and_blocked": "{agent} was {minutes} minutes late for work, held up by {other} at the {object}.",
    "first_clash": "{agent} and {other} clashed for the first time, over {what}.",
    "bonded_over_lunch": "{agent} and {other} bonded over lunch at the {place}.",
    "arrival": "{agent} arrived in town and moved into {home}.",
    "exit": "{agent} left town: {reason}.",
    "eviction_notice": "{agent} got an eviction notice for unpaid rent.",
    "price_spike": "Prices jumped: {item} now costs {percent}% more.",
    "blackout": "The power went out all over town.",
    "water_outage": "The water went off all over town.",
    "closed_facility": "The {place} closed its doors for a while.",
    "arranged_meet": "Rivals {agent} and {other} were invited to talk it out at the {place}.",
    "restored": "{what} is over.",
}

FIELDS = {
    "late_and_blocked": {"agent", "other", "minutes", "object"},
    "first_clash": {"agent", "other", "what"},
    "bonded_over_lunch": {"agent", "other", "place"},
    "arrival": {"agent", "home"},
    "exit": {"agent", "reason"},
    "eviction_notice": {"agent"},
    "price_spike": {"item", "percent"},
    "blackout": set(),
    "water_outage": set(),
    "closed_facility": {"place"},
    "arranged_meet": {"agent", "other", "place"},
    "restored": {"what"},
}

CLASHES = {
    "blocked_shower": "a blocked shower",
    "took_my_shift": "a taken shift",
    "failed_chat": "an awkward chat",
    "ghost_pushed": "a shove in a queue",
}

EXIT_REASONS = {
    "collapse": "collapsed from hunger",
    "eviction": "evicted for unpaid rent",
    "unemployment": "gave up after days without work",
    "neglect": "worn down by neglect",
    "age_out": "retired",
    "console": "sent away by the operator",
}

ENDED = {
    "price_spike": "The price spike on {target}",
    "blackout": "The blackout",
    "water_outage": "The water outage",
    "closed_facility": "The closure of the {target}",
}


def readable(name: str) -> str:
    """A data name as words: ``raw_food`` -> ``raw food``."""
    return name.replace("_", " ")
