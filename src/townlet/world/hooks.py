"""Hooks: named callbacks from allow-listed modules, called with one typed payload in a fixed order.

A hook module defines ``register(registry)`` and calls :meth:`HookRegistry.add` for hooks that
affordances name, and :meth:`HookRegistry.on` for global hooks (see ``GLOBAL_EVENTS``). Hooks are
called in a deterministic order: affordance hooks in manifest order, global hooks in module order then
registration order. A hook that raises is reported as an event; the tick carries on.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

GLOBAL_EVENTS = (
    "tick",
    "spawn",
    "need_threshold",
    "affordance_before",
    "affordance_after",
    "affordance_fail",
    "price_change",
    "weather_change",
    "power_cut",
    "conflict",
    "quit_job",
    "agent_exit",
    "agent_spawn",
    "agent_near_death",
)


@dataclass(frozen=True, slots=True)
class HookPayload:
    """What every hook receives.

    Attributes:
        tick: The current tick.
        phase: ``before`` / ``after`` / ``fail`` for affordance hooks, else the global event name.
        agent: The agent id, or None.
        object: The object id, or None.
        affordance: The affordance id, or None.
        effects: Effects applied so far (need deltas by name, ``wallet``, inventory items), read-only.
        detail: Extra context (failure reason, weather state, need name...).
    """

    tick: int
    phase: str
    agent: str | None = None
    object: str | None = None
    affordance: str | None = None
    effects: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    detail: str = ""


Hook = Callable[[HookPayload], None]


class HookError(RuntimeError):
    """A hook module could not be loaded or registered."""


class HookRegistry:
    """Hooks by name and global hooks by event, with call counters for inspection.

    Pickling (a town copied into a vector env's worker) carries the counters and re-registers the hooks
    of the modules the registry was built from (:meth:`from_modules`) on the other side, so hooks that are
    closures over the registry work; hooks added by hand are pickled as they are. A hook that keeps state
    of its own outside ``stats`` starts afresh in the copy.
    """

    def __init__(self) -> None:
        self._named: dict[str, Hook] = {}
        self._global: dict[str, list[tuple[str, Hook]]] = {event: [] for event in GLOBAL_EVENTS}
        self.calls: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.modules: tuple[str, ...] = ()  # modules whose register() filled this registry, in order
        self._by_hand: list[tuple[str, str, Hook]] = []  # ("add" | event, name, hook) not from a module

    @classmethod
    def from_modules(cls, modules: list[str], allowed: list[str]) -> HookRegistry:
        """Import each allow-listed module and let it register its hooks."""
        registry = cls()
        for name in modules:
            if name not in allowed:
                raise HookError(f"hook module {name!r} is not in hooks.allowed_modules")
            registry._register_module(name)
        return registry

    def _register_module(self, name: str) -> None:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise HookError(f"cannot import hook module {name!r}: {exc}") from None
        register = getattr(module, "register", None)
        if not callable(register):
            raise HookError(f"hook module {name!r} has no register(registry) function")
        by_hand = self._by_hand
        self._by_hand = []  # what register() adds comes back by calling it again
        try:
            register(self)
        finally:
            self._by_hand = by_hand
        self.modules += (name,)

    def __getstate__(self) -> dict[str, object]:
        return {"modules": self.modules, "by_hand": self._by_hand, "calls": self.calls, "stats": self.stats}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]
        for name in state["modules"]:  # type: ignore[attr-defined]
            self._register_module(name)
        for kind, name, hook in state["by_hand"]:  # type: ignore[attr-defined]
            if kind == "add":
                self.add(name, hook)
            else:
                self.on(kind, hook, name)
        self.calls, self.stats = state["calls"], state["stats"]  # type: ignore[assignment]

    def add(self, name: str, hook: Hook) -> None:
        """Register a named hook that affordances can list."""
        if name in self._named:
            raise HookError(f"hook {name!r} is registered twice")
        self._named[name] = hook
        self._by_hand.append(("add", name, hook))

    def on(self, event: str, hook: Hook, name: str = "") -> None:
        """Register a global hook for one of ``GLOBAL_EVENTS``."""
        if event not in self._global:
            raise HookError(f"unknown global hook event {event!r} (known: {', '.join(GLOBAL_EVENTS)})")
        name = name or getattr(hook, "__name__", "hook")
        self._global[event].append((name, hook))
        self._by_hand.append((event, name, hook))

    def known(self, name: str) -> bool:
        """Whether a named hook exists."""
        return name in self._named

    def has_global(self, event: str) -> bool:
        """Whether anything listens to a global event (lets callers skip building payloads)."""
        return bool(self._global.get(event))

    def call(self, names: tuple[str, ...], payload: HookPayload) -> list[str]:
        """Call named hooks in order; return error messages of hooks that raised."""
        errors = []
        for name in names:
            self.calls[name] += 1
            try:
                self._named[name](payload)
            except Exception as exc:  # noqa: BLE001 - a hook must never stop the tick
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        return errors

    def emit(self, event: str, payload: HookPayload) -> list[str]:
        """Call the global hooks of ``event`` in registration order; return error messages."""
        errors = []
        for name, hook in self._global[event]:
            self.calls[f"{event}:{name}"] += 1
            try:
                hook(payload)
            except Exception as exc:  # noqa: BLE001 - a hook must never stop the tick
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        return errors
