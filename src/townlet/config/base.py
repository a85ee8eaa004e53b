"""Shared building blocks of the config models: the strict base class, unit types and time-of-day parsing."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from townlet.config.vocabulary import NEEDS, OPTIONS, NeedName

NEED_NAMES: tuple[NeedName, ...] = NEEDS  # the vocabulary's names, by the config models' old spelling
OPTION_NAMES = OPTIONS

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Rate = Annotated[float, Field(ge=0.0, le=0.05)]
Money = Annotated[float, Field(ge=0.0, le=10_000.0)]
Ticks = Annotated[int, Field(ge=0, le=1_000_000)]

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Strict(BaseModel):
    """Base for all config sections: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def clock_to_tick(value: str, ticks_per_day: int) -> int:
    """Convert ``"HH:MM"`` to a tick of the day (``"00:00"`` is tick 0)."""
    match = _CLOCK.match(value)
    if not match:
        raise ValueError(f"expected a time of day 'HH:MM', got {value!r}")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    return round(minutes * ticks_per_day / 1440)


def _check_clock(value: str) -> str:
    if not _CLOCK.match(value):
        raise ValueError(f"expected a time of day 'HH:MM', got {value!r}")
    return value


Clock = Annotated[str, AfterValidator(_check_clock)]
