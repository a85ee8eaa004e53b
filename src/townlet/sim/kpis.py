"""KPIs accumulated tick by tick: attendance, lateness, collapses, need health, money flows, queues."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from townlet.world.events import Event, EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

COUNTED = {
    EventKind.COLLAPSE: "collapses",
    EventKind.CHAT: "chats",
    EventKind.QUEUE_JOINED: "queue_joins",
    EventKind.PURCHASE: "purchases",
    EventKind.AFFORDANCE_COMPLETED: "affordances_completed",
    EventKind.AFFORDANCE_FAILED: "affordances_failed",
    EventKind.OPTION_FAILED: "options_failed",
    EventKind.JOB_LOST: "jobs_lost",
    EventKind.RENT_UNPAID: "rent_unpaid",
    EventKind.HOOK_ERROR: "hook_errors",
    EventKind.AGENT_ARRIVED: "arrivals",
    EventKind.NARRATION: "narrations",
    EventKind.PERTURBATION_STARTED: "perturbations",
}


class KpiTracker:
    """Running totals for the KPI table and the ``--json`` contract."""

    def __init__(self, world: World) -> None:
        self.ok = np.float32(world.config.needs.ok_threshold)
        self.agent_ticks = 0
        self.need_ok_ticks = 0
        self.counts: Counter[str] = Counter()
        self.activities: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.perturbation_kinds: Counter[str] = Counter()
        self.reward_stats: Any = None  # the simulation attaches its reward stats (mean/std in the report)

    def update(self, world: World, events: list[Event]) -> None:
        """Fold one tick into the totals."""
        a = world.agents
        alive = a.alive
        n, ok = _need_ok(alive, a.needs, self.ok)
        self.agent_ticks += n
        self.need_ok_ticks += ok
        for event in events:
            name = COUNTED.get(event.kind)
            if name is not None:
                self.counts[name] += 1
                if event.kind is EventKind.AFFORDANCE_COMPLETED:
                    self.activities[event.detail] += 1
                elif event.kind is EventKind.PERTURBATION_STARTED:
                    self.perturbation_kinds[event.detail.partition(":")[0]] += 1
            elif event.kind is EventKind.AGENT_EXIT:
                self.exits[event.detail] += 1

    def report(self, world: World) -> dict[str, Any]:
        """The KPI mapping (see docs/cli.md for every field)."""
        emp, a = world.employment, world.agents
        attended, absent, late = int(emp.attended.sum()), int(emp.absent.sum()), int(emp.late.sum())
        resolved = attended + absent
        wallets = a.wallet[a.alive]
        return {
            "attendance": round(attended / resolved, 4) if resolved else 1.0,
            "lateness": round(late / attended, 4) if attended else 0.0,
            "shifts_attended": attended,
            "shifts_absent": absent,
            "collapses": self.counts["collapses"],
            "need_ok_share": round(self.need_ok_ticks / self.agent_ticks, 4) if self.agent_ticks else 1.0,
            "queue_conflicts": int(world.counters["queue_conflicts"]),
            "ghost_steps": int(world.counters["ghost_steps"]),
            "queue_joins": self.counts["queue_joins"],
            "chats": self.counts["chats"],
            "meals": int(world.hooks.stats["meals"]),
            "money": {
                "wages": round(world.economy.flows["wages"], 4),
                "rent": round(world.economy.flows["rent"], 4),
                "purchases": round(world.economy.flows["purchases"], 4),
                "fees": round(world.economy.flows["fees"], 4),
                "restock": round(world.economy.flows["restock"], 4),
                "wallet_mean": round(float(wallets.mean()), 4) if len(wallets) else 0.0,
                "wallet_min": round(float(wallets.min()), 4) if len(wallets) else 0.0,
                "wallet_max": round(float(wallets.max()), 4) if len(wallets) else 0.0,
            },
            "activities": dict(sorted(self.activities.items())),
            "options_failed": self.counts["options_failed"],
            "jobs_lost": self.counts["jobs_lost"],
            "rent_unpaid": self.counts["rent_unpaid"],
            "hook_errors": self.counts["hook_errors"],
            "exits": dict(sorted(self.exits.items())),
            "arrivals": self.counts["arrivals"],
            "perturbations": self.counts["perturbations"],
            "perturbation_kinds": dict(sorted(self.perturbation_kinds.items())),
            "narrations": self.counts["narrations"],
            "reward": {
                "mean": round(self.reward_stats.mean, 6) if self.reward_stats else 0.0,
                "std": round(self.reward_stats.std, 6) if self.reward_stats else 0.0,
            },
        }


@numba.njit(cache=True)
def _need_ok(alive: np.ndarray, needs: np.ndarray, ok: np.float32) -> tuple[int, int]:
    """Living agents, and those among them with every need below ``ok``."""
    n = good = 0
    for s in range(len(alive)):
        if alive[s]:
            n += 1
            good += int(needs[s].max() < ok)
    return n, good
