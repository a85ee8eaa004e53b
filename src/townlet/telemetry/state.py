"""The town as plain JSON data: the ``state`` object every snapshot carries and every diff patches.

Field names and units are those of the world and of snapshots: needs are deficits in [0, 1], money is in
meal units, positions are tile coordinates, agents and objects are keyed by their string ids. The state
never contains ``null``: a field that does not apply (no job, no reservation, an empty queue) is left
out, so a diff can use JSON Merge Patch (RFC 7386), where ``null`` means "remove".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.config.vocabulary import ACTIVITIES, NEEDS, OPTIONS, TRAITS, WEATHERS
from townlet.sim.driving import driving_kind
from townlet.world.relationships import FAMILIARITY, RIVALRY, TRUST

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation


def clock_text(tick_of_day: int, ticks_per_day: int) -> str:
    """``"HH:MM"`` for a tick of the day."""
    minutes = round(tick_of_day * 1440 / ticks_per_day) % 1440
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class StateBuilder:
    """Reads a simulation (never writes) and renders its state as JSON-ready data.

    Args:
        sim: The simulation to read.
        digits: Decimals kept for needs, money and tie values.
    """

    def __init__(self, sim: Simulation, digits: int = 4) -> None:
        self.sim = sim
        self.digits = digits
        w = sim.world
        o = w.objects
        self.place_ids = list(o.place_ids)
        self.object_static = [
            {"type": o.types[i], "place": o.place_ids[int(o.place[i])], "x": int(o.x[i]), "y": int(o.y[i])}
            for i in range(o.count)
        ]
        emp = w.employment
        tpd = w.ticks_per_day
        self.job_static = [
            {
                "title": emp.names[j],
                "station": o.ids[int(emp.station[j])],
                "shift": [clock_text(int(emp.start[j]), tpd), clock_text(int(emp.end[j]), tpd)],
            }
            for j in range(len(emp))
        ]
        self.option_labels = OPTIONS
        self.ties_shown = sim.config.observations.social_top  # top friends and rivals, as agents observe them
        narrator = getattr(sim, "narration", None)
        self.private = bool(getattr(narrator, "privacy", False))
        # streamer privacy (SPEC 10)
        self.public: Any = narrator.pseudonyms.of if narrator is not None and self.private else _same
        self._agent_cache: dict[int, dict[str, Any]] = {}
        self._objects: dict[str, Any] = {o.ids[i]: self.object_static[i] for i in range(o.count)}
        self._object_keys: dict[int, tuple[Any, ...]] = {}
        self._busy: set[int] = set()
        self._driving: tuple[Any, dict[str, Any]] = (None, {})

    def _round(self, values: np.ndarray) -> list[Any]:
        return np.round(values.astype(np.float64), self.digits).tolist()

    def build(self, tick: int | None = None) -> dict[str, Any]:
        """The whole state right now (after the tick being published).

        Args:
            tick: The tick the state is labelled with and its clock read at (default: the world's); an amended
                publish between ticks passes the last tick simulated.
        """
        sim, w = self.sim, self.sim.world
        tick = int(w.tick if tick is None else tick)
        tpd = w.ticks_per_day
        tod = tick % tpd
        state: dict[str, Any] = {
            "tick": tick,
            "clock": {
                "day": int(tick // tpd),
                "time": clock_text(tod, tpd),
                "tick_of_day": int(tod),
                "ticks_per_day": int(tpd),
                **_pacing(sim),
            },
            "agents": self.agents(tick),
            "objects": self.objects(),
            "economy": self.economy(),
            "weather": {"state": WEATHERS[w.weather.state]},
            "utilities": self.utilities(),
            "kpis": sim.kpis.report(w),
        }
        perturbations = getattr(sim, "perturbations", None)
        if perturbations is not None:
            state["perturbations"] = self.perturbations(perturbations.active)
        state["policy"] = self.driving_policy()
        return state

    def driving_policy(self) -> dict[str, Any]:
        """Who drives the town: ``{hash, name, source}`` and, for a learned policy, ``since`` (its first tick)."""
        actor = self.sim.actor
        if actor is not None and hasattr(actor, "identity"):
            ident = actor.identity()
            key: tuple[Any, ...] = (ident["hash"], ident["name"], ident["source"], ident["since"])
        elif actor is not None:
            name = str(getattr(actor, "policy_hash", None) or type(actor).__name__)
            key = (name, name, "in-process", None)
        else:
            kind = driving_kind(self.sim)
            key = (kind, kind, "builtin", None)
        if self._driving[0] != key:
            out = {"hash": key[0], "name": key[1], "source": key[2]}
            if key[3] is not None:
                out["since"] = int(key[3])
            self._driving = (key, out)
        return self._driving[1]

    def utilities(self) -> dict[str, Any]:
        """Places without power or water, and places closed to the public."""
        w = self.sim.world
        out = {
            "power_off": [self.place_ids[p] for p in np.flatnonzero(~w.utilities.power_on)],
            "water_off": [self.place_ids[p] for p in np.flatnonzero(~w.utilities.water_on)],
        }
        place_open = getattr(w, "place_open", None)
        if place_open is not None:
            out["closed"] = [self.place_ids[p] for p in np.flatnonzero(~place_open)]
        return out

    def perturbations(self, active: list[Any]) -> list[dict[str, Any]]:
        """Running perturbations (city events and arranged meets), oldest first."""
        ids = self.sim.world.agents.ids
        out = []
        for p in active:
            entry: dict[str, Any] = {
                "id": int(p.id),
                "kind": p.kind,
                "started": int(p.start),
                "ends": int(p.end),
                "target": str(p.target),
                "detail": p.detail,
            }
            if p.kind == "price_spike":
                entry["magnitude"] = round(float(p.magnitude), self.digits)
            if p.agents:
                entry["agents"] = [self.public(ids[s] or "?") for s in p.agents]
            out.append(entry)
        return out

    def agents(self, tick: int | None = None) -> dict[str, Any]:
        """Every living agent: position, needs, wallet, inventory, option, body, job, top ties and policy.

        ``policy`` (``{hash, top: [[option, probability], ...], value}``, best option first) is there for an
        agent a learned policy drives, once it has decided under that policy (the inspector's numbers from
        its last decision); possessed agents and agents of the built-in routine have none.

        Parts that rarely change (personality, job, ties) are cached per slot and rebuilt only when their
        source values change, so unchanged parts are the very same objects tick after tick. ``tick`` is the
        tick whose shift hours apply (default: the world's).
        """
        w = self.sim.world
        a, rel, grid = w.agents, w.relationships, w.grid
        slots = a.slots()
        if not len(slots):
            return {}
        needs = self._round(a.needs[slots])
        wallets = self._round(a.wallet[slots])
        inventory = a.inventory[slots].tolist()
        tiles = a.tile[slots]
        xs, ys = (tiles % grid.width).tolist(), (tiles // grid.width).tolist()
        places = grid.place_index[tiles].tolist()
        options = a.option[slots].tolist()
        activity = a.activity[slots].tolist()
        targets = a.target_obj[slots].tolist()
        asleep = a.asleep[slots].tolist()
        jobs = a.job[slots]
        job_keys = self._job_keys(slots, jobs, int(w.tick if tick is None else tick))
        jobs = jobs.tolist()
        possessed = getattr(self.sim.policy, "possessed_by", None) or {}
        inspect = getattr(self.sim.actor, "inspect", None)  # a learned policy's inspector (policy/driver.py)
        inspected = inspect(slots, digits=self.digits) if inspect is not None else None
        ids, items, object_ids = a.ids, a.items, w.objects.ids
        cache = self._agent_cache
        out: dict[str, Any] = {}
        for i, slot in enumerate(slots.tolist()):
            name = ids[slot] or "?"
            cached = cache.get(slot)
            if cached is None or cached["id"] != name:
                cached = cache[slot] = {"id": name, "personality": self._personality(slot)}
            agent: dict[str, Any] = {
                "slot": slot,
                "x": xs[i],
                "y": ys[i],
                "needs": dict(zip(NEEDS, needs[i], strict=True)),
                "wallet": wallets[i],
                "inventory": dict(zip(items, inventory[i], strict=True)),
                "activity": ACTIVITIES[activity[i]],
                "asleep": asleep[i],
                "personality": cached["personality"],
            }
            if places[i] >= 0:
                agent["place"] = self.place_ids[places[i]]
            if options[i] >= 0:
                agent["option"] = self.option_labels[options[i]]
            if targets[i] >= 0:
                agent["target"] = object_ids[targets[i]]
            if jobs[i] >= 0:
                key = job_keys[i]
                if cached.get("job_key") != key:
                    cached["job_key"] = key
                    cached["job"] = {
                        **self.job_static[key[0]],
                        "on_shift": key[1],
                        "clocked_in": key[2],
                        "attended": key[3],
                        "late": key[4],
                        "absent": key[5],
                    }
                agent["job"] = cached["job"]
            if rel.enabled:
                key = rel.other[slot].tobytes() + rel.values[slot].tobytes()
                if cached.get("ties_key") != key:
                    cached["ties_key"] = key
                    cached["ties"] = self._ties(rel, slot)
                if cached["ties"]:
                    agent["ties"] = cached["ties"]
            if slot in possessed:
                agent["possessed_by"] = possessed[slot]
            elif inspected is not None and inspected[i] is not None:
                agent["policy"] = inspected[i]
            out[self.public(name)] = agent
        return out

    def _personality(self, slot: int) -> dict[str, float]:
        values = np.round(self.sim.world.agents.personality[slot].astype(np.float64), 3).tolist()
        return dict(zip(TRAITS, values, strict=True))

    def _job_keys(self, slots: np.ndarray, jobs: np.ndarray, tick: int) -> list[tuple[Any, ...]]:
        """Per agent: (job, on shift, clocked in today, attended, late, absent) at ``tick``."""
        w = self.sim.world
        emp = w.employment
        if not len(emp):
            return [()] * len(slots)
        j = np.maximum(jobs, 0)
        tod = tick % w.ticks_per_day
        on_shift = ((emp.start[j] <= tod) & (tod < emp.end[j])).tolist()
        clocked = (emp.arrived_day[j] == tick // w.ticks_per_day).tolist()
        attended, late, absent = emp.attended[slots].tolist(), emp.late[slots].tolist(), emp.absent[slots].tolist()
        return list(zip(jobs.tolist(), on_shift, clocked, attended, late, absent, strict=True))

    def _ties(self, rel: Any, slot: int) -> dict[str, Any]:
        if not (rel.other[slot] >= 0).any():
            return {}
        ids = self.sim.world.agents.ids
        out: dict[str, Any] = {}
        for key, component in (("friends", TRUST), ("rivals", RIVALRY)):
            chosen = [(other, v) for other, v in rel.top(slot, self.ties_shown, by=component) if v[component] > 0]
            if chosen:
                out[key] = [
                    {
                        "id": self.public(ids[other] or "?"),
                        "trust": round(float(v[TRUST]), self.digits),
                        "familiarity": round(float(v[FAMILIARITY]), self.digits),
                        "rivalry": round(float(v[RIVALRY]), self.digits),
                    }
                    for other, v in chosen
                ]
        return out

    def objects(self) -> dict[str, Any]:
        """Every object: type, place, position, and who reserves, uses or queues for it.

        Only objects whose holders or queue changed since the last call are rebuilt; when none did,
        the previous mapping itself is returned.
        """
        w = self.sim.world
        o, ids = w.objects, w.agents.ids
        busy = set(np.flatnonzero((o.reserved_by >= 0) | (o.user >= 0)).tolist())
        busy.update(w.queues.lines().tolist())
        out = self._objects
        changed = False
        for i in sorted(busy | self._busy):
            key = (int(o.reserved_by[i]), int(o.user[i]), tuple(o.queue[i]))
            if self._object_keys.get(i) == key:
                continue
            if not changed:
                out = dict(out)  # copy on write: earlier states keep their own mapping
                changed = True
            self._object_keys[i] = key
            entry = dict(self.object_static[i])
            public = self.public
            if key[0] >= 0:
                entry["reserved_by"] = public(ids[key[0]] or "?")
            if key[1] >= 0:
                entry["user"] = public(ids[key[1]] or "?")
            if key[2]:
                entry["queue"] = [public(ids[s] or "?") for s in key[2]]
            out[o.ids[i]] = entry
        self._busy = busy
        self._objects = out
        return out

    def economy(self) -> dict[str, Any]:
        """Prices, stock and tills per shop, and the treasury."""
        e, d = self.sim.world.economy, self.digits
        return {
            "prices": {item: round(float(p), d) for item, p in e.prices.items()},
            "stock": {self.place_ids[p]: dict(items) for p, items in sorted(e.stock.items())},
            "tills": {self.place_ids[p]: round(float(cash), d) for p, cash in sorted(e.till.items())},
            "treasury": round(float(e.treasury), d),
        }


def _pacing(sim: Simulation) -> dict[str, Any]:
    clock = getattr(sim, "clock", None)
    return {"speed": clock.speed, "paused": clock.paused} if clock is not None else {}


def _same(name: str) -> str:
    return name
