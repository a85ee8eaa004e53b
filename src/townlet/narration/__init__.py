"""Narration (SPEC 10): short lines about notable moments, throttled, de-duplicated, with a privacy mode."""

from townlet.narration.narrator import Line, Narrator
from townlet.narration.privacy import Pseudonyms
from townlet.narration.templates import CATEGORIES, TEMPLATES

__all__ = ["CATEGORIES", "TEMPLATES", "Line", "Narrator", "Pseudonyms"]
