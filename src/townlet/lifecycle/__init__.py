"""Lifecycle (SPEC 8): exit triggers, the exit-storm guard, exits and the newcomers who replace the leavers."""

from townlet.lifecycle.exits import REASONS, Arrival, Lifecycle, PendingExit
from townlet.lifecycle.triggers import FACILITY_REASONS, ExitTriggers

__all__ = ["FACILITY_REASONS", "REASONS", "Arrival", "ExitTriggers", "Lifecycle", "PendingExit"]
