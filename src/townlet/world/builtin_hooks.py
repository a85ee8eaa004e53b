"""Hooks shipped with Townlet: counters that the KPI table and tests read."""

from __future__ import annotations

from townlet.world.hooks import HookPayload, HookRegistry


def register(registry: HookRegistry) -> None:
    """Register the built-in hooks."""

    def count_meal(payload: HookPayload) -> None:
        registry.stats["meals"] += 1

    def count_power_cut(payload: HookPayload) -> None:
        registry.stats["power_cut_failures"] += 1

    registry.add("count_meal", count_meal)
    registry.on("power_cut", count_power_cut, "count_power_cut")
