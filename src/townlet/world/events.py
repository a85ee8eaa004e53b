"""The tick's event list: small typed records that every downstream consumer reads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventKind(StrEnum):
    """Every kind of thing that can happen in a tick."""

    OPTION_STARTED = "option_started"
    OPTION_FINISHED = "option_finished"
    OPTION_FAILED = "option_failed"
    AFFORDANCE_STARTED = "affordance_started"
    AFFORDANCE_COMPLETED = "affordance_completed"
    AFFORDANCE_FAILED = "affordance_failed"
    QUEUE_JOINED = "queue_joined"
    QUEUE_TIMEOUT = "queue_timeout"
    RESERVATION_EXPIRED = "reservation_expired"
    TIE_BREAK = "tie_break"
    GHOST_STEP = "ghost_step"
    PURCHASE = "purchase"
    RENT_PAID = "rent_paid"
    RENT_UNPAID = "rent_unpaid"
    RESTOCK = "restock"
    WAGE = "wage"
    SHIFT_ARRIVED = "shift_arrived"
    SHIFT_ABSENT = "shift_absent"
    JOB_LOST = "job_lost"
    JOB_HIRED = "job_hired"
    CHAT = "chat"
    TIE_CHANGED = "tie_changed"
    NEED_THRESHOLD = "need_threshold"
    COLLAPSE = "collapse"
    WEATHER_CHANGED = "weather_changed"
    UTILITY_CHANGED = "utility_changed"
    PRICE_CHANGED = "price_changed"
    INVARIANT_VIOLATED = "invariant_violated"
    HOOK_ERROR = "hook_error"
    TELEPORT = "teleport"
    IDENTITY_REUSED = "identity_reused"
    EXIT_PENDING = "exit_pending"
    EVICTION_NOTICE = "eviction_notice"
    AGENT_EXIT = "agent_exit"
    AGENT_ARRIVED = "agent_arrived"
    PERTURBATION_STARTED = "perturbation_started"
    PERTURBATION_ENDED = "perturbation_ended"
    NARRATION = "narration"
    ALERT = "alert"
    POLICY_CHANGED = "policy_changed"  # another policy drives the town (console swap, promotion, rollback)


@dataclass(slots=True, unsafe_hash=True)
class Event:
    """One thing that happened: who, what, where, and a little detail.

    Immutable by convention: consumers read events and never assign to them. The class is not ``frozen``
    because a frozen dataclass costs about four times as much to build (tens of events a tick at a
    thousand agents); it still compares and hashes by value.

    Attributes:
        tick: The tick it happened on.
        kind: What happened.
        agent: The acting agent's slot, or -1.
        other: A second agent's slot (chat partner, blocker), or -1.
        obj: An object index, or -1.
        value: A number that goes with the event (money, lateness ticks, a need level), else 0.
        detail: A short label (affordance id, need name, weather state, reason).
    """

    tick: int
    kind: EventKind
    agent: int = -1
    other: int = -1
    obj: int = -1
    value: float = 0.0
    detail: str = ""
