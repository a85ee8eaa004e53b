"""The console's stable error codes and the one exception that carries them."""

from __future__ import annotations

E_UNAUTHENTICATED = "E_UNAUTHENTICATED"  # no token, a malformed, forged, expired or revoked token
E_FORBIDDEN = "E_FORBIDDEN"  # a valid token whose role may not run this command
E_NOT_FOUND = "E_NOT_FOUND"  # no such command, agent, object, place, item or perturbation
E_INVALID_ARG = "E_INVALID_ARG"  # arguments missing, of the wrong type or out of range
E_BLOCKED_TILE = "E_BLOCKED_TILE"  # the target tile is a wall, off the map, or an occupied indoor tile
E_BUSY_TARGET = "E_BUSY_TARGET"  # the target is in the middle of something that cannot be interrupted
E_ALREADY_POSSESSED = "E_ALREADY_POSSESSED"  # someone else already drives this agent
E_CONFLICT = "E_CONFLICT"  # the command contradicts the current state (town full, feature off, id taken...)
E_RATE_LIMITED = "E_RATE_LIMITED"  # this principal sent commands faster than console.rate_limit allows

ERROR_CODES = (
    E_UNAUTHENTICATED,
    E_FORBIDDEN,
    E_NOT_FOUND,
    E_INVALID_ARG,
    E_BLOCKED_TILE,
    E_BUSY_TARGET,
    E_ALREADY_POSSESSED,
    E_CONFLICT,
    E_RATE_LIMITED,
)


MAX_MESSAGE = 300  # characters: no answer or audit line ever echoes unbounded input


def clip(text: object, limit: int = MAX_MESSAGE) -> str:
    """``text`` as a string of at most ``limit`` characters (an ellipsis marks a cut)."""
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CommandError(Exception):
    """A refused or failed command: a stable ``code`` and a human ``message`` (clipped to ``MAX_MESSAGE``)."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        message = clip(message)
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
