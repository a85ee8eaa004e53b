"""The telemetry JSON Schema: built here, published as ``schema/telemetry-v2.json``, validated against in tests.

Every line of a stream is one message: ``snapshot`` (the whole state), ``diff`` (a merge patch of the
state since the previous tick) or ``event`` (one thing that happened). The patch schema is derived from
the state schema (:func:`patch_schema`): the same fields, none required, ``null`` allowed where a field
may be removed. ``townlet telemetry schema`` prints the published file; a test keeps it equal to
:func:`build_schema` so the two can never drift.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from townlet.config.models import ObservationsConfig
from townlet.config.vocabulary import ACTIVITIES, NEEDS, OPTIONS, TRAITS, WEATHERS

SCHEMA_VERSION = 2  # 2: agents' `policy` (the inspector), the town's `policy`, live canaries in `stability`
SCHEMA_ID = f"townlet.telemetry/{SCHEMA_VERSION}"
SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / f"telemetry-v{SCHEMA_VERSION}.json"
MESSAGE_TYPES = ("snapshot", "diff", "event", "error")
# friends and rivals an agent shows: observations.social_top, at most its bound
MAX_TIES_SHOWN = max(m.le for m in ObservationsConfig.model_fields["social_top"].metadata if hasattr(m, "le"))

INT = {"type": "integer"}
NAT = {"type": "integer", "minimum": 0}
NUM = {"type": "number"}
UNIT = {"type": "number", "minimum": 0, "maximum": 1}
SIGNED_UNIT = {"type": "number", "minimum": -1, "maximum": 1}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
HHMM = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}


def obj(properties: dict[str, Any], required: list[str] | None = None, extra: Any = False, **more: Any) -> dict:
    """An object schema; ``required`` defaults to every property."""
    out: dict[str, Any] = {"type": "object", "properties": properties}
    out["required"] = list(properties) if required is None else required
    out["additionalProperties"] = extra
    out.update(more)
    return out


def mapping(values: Any, **more: Any) -> dict:
    """An object used as a map from ids to ``values``."""
    return {"type": "object", "additionalProperties": values, **more}


def array(items: Any, **more: Any) -> dict:
    """An array of ``items``."""
    return {"type": "array", "items": items, **more}


def ref(name: str) -> dict:
    """A reference to a definition."""
    return {"$ref": f"#/$defs/{name}"}


def _definitions() -> dict[str, Any]:
    tie = obj({"id": STR, "trust": SIGNED_UNIT, "familiarity": SIGNED_UNIT, "rivalry": SIGNED_UNIT})
    job = obj(
        {
            "title": STR,
            "station": STR,
            "shift": array(HHMM, minItems=2, maxItems=2),
            "on_shift": BOOL,
            "clocked_in": BOOL,
            "attended": NAT,
            "late": NAT,
            "absent": NAT,
        }
    )
    agent = obj(
        {
            "slot": NAT,
            "x": NAT,
            "y": NAT,
            "place": STR,
            "needs": obj({name: UNIT for name in NEEDS}),
            "wallet": NUM,
            "inventory": mapping(NAT),
            "activity": {"enum": list(ACTIVITIES)},
            "asleep": BOOL,
            "personality": obj({name: SIGNED_UNIT for name in TRAITS}),
            "option": {"enum": list(OPTIONS)},
            "target": STR,
            "job": ref("job"),
            "ties": obj(
                {
                    "friends": array(ref("tie"), maxItems=MAX_TIES_SHOWN),
                    "rivals": array(ref("tie"), maxItems=MAX_TIES_SHOWN),
                },
                [],
            ),
            "possessed_by": STR,
            "policy": obj(
                {
                    "hash": STR,
                    "top": array(
                        {
                            "type": "array",
                            "prefixItems": [{"enum": list(OPTIONS)}, UNIT],
                            "items": False,
                            "minItems": 2,
                            "maxItems": 2,
                        },
                        minItems=3,
                        maxItems=len(OPTIONS),
                    ),
                    "value": NUM,
                },
                description="The policy inspector: the learned policy driving this agent, its options' "
                "probabilities at the agent's last decision (best first) and its value estimate.",
            ),
        },
        required=["slot", "x", "y", "needs", "wallet", "inventory", "activity", "asleep", "personality"],
        description="A living agent; optional fields are left out when they do not apply.",
    )
    thing = obj(
        {
            "type": STR,
            "place": STR,
            "x": NAT,
            "y": NAT,
            "reserved_by": STR,
            "user": STR,
            "queue": array(STR, minItems=1),
        },
        required=["type", "place", "x", "y"],
        description="An object: who reserves it, uses it and queues for it (left out when nobody).",
    )
    economy = obj(
        {
            "prices": mapping({"type": "number", "exclusiveMinimum": 0}),
            "stock": mapping(mapping(NAT)),
            "tills": mapping(NUM),
            "treasury": NUM,
        },
        description="Money in meal units; stock and tills per shop place.",
    )
    kpis = obj(
        {
            "attendance": UNIT,
            "lateness": UNIT,
            "shifts_attended": NAT,
            "shifts_absent": NAT,
            "collapses": NAT,
            "need_ok_share": UNIT,
            "queue_conflicts": NAT,
            "ghost_steps": NAT,
            "queue_joins": NAT,
            "chats": NAT,
            "meals": NAT,
            "money": mapping(NUM),
            "activities": mapping(NAT),
        },
        required=["attendance", "lateness", "collapses", "need_ok_share", "money"],
        extra={"type": ["number", "object"]},
        description="Run totals as in `townlet run --json` (docs/cli.md); later issues may add counters.",
    )
    window = obj(
        {
            "start": NAT,
            "end": NAT,
            "agent_ticks": NAT,
            "need_ok_share": UNIT,
            "lateness": UNIT,
            "arrivals": NAT,
            "late_arrivals": NAT,
            "collapses": NAT,
            "exits": NAT,
            "option_starts_per_agent_day": {"type": "number", "minimum": 0},
            "chats": NAT,
        }
    )
    canary = obj(
        {"state": {"enum": ["ok", "fired"]}, "fired": NAT, "window": NAT, "value": NUM, "limit": NUM, "message": STR},
        required=["state", "fired"],
        description="One live canary: its state as of the last closed window, how often it fired, and when last.",
    )
    stability = obj(
        {
            "window_ticks": NAT,
            "windows": NAT,
            "last": window,
            "previous": window,
            "canaries": mapping(
                canary,
                description="by canary: lateness_spike, starvation, option_thrash, "
                "reward_collapse (docs/evaluation.md)",
            ),
            "policy": STR,
            "release": STR,
            "pinned": STR,
            "rollbacks": NAT,
        },
        required=["window_ticks", "windows"],
        description="Rolling KPI windows (each `window_ticks` long): the last two completed windows; in a live "
        "town also the stability canaries of the policy driving (`policy`), the registry's `release`, a pin "
        "(its reason) and the rollbacks the canaries caused.",
    )
    driving = obj(
        {"hash": STR, "name": STR, "source": STR, "since": NAT},
        required=["hash", "name", "source"],
        description="The policy driving the town: a learned policy's hash (or scripted/random), how it is "
        "called, where it came from (builtin, default, path, registry, release, snapshot) and since which tick.",
    )
    ms = {"type": "number", "minimum": 0}
    perf = obj(
        {
            "ticks": NAT,
            "tick_ms_mean": ms,
            "phase_ms": mapping(ms),
            "slowest": array(obj({"tick": NAT, "ms": ms})),
            "window": NAT,
            "agents": NAT,
            "tick_ms_p50": ms,
            "tick_ms_p99": ms,
            "tick_ms_max": ms,
            "target_tick_ms": {"type": ["number", "null"]},
            "headroom": {"type": ["number", "null"]},
        },
        required=["ticks", "tick_ms_mean", "phase_ms", "slowest"],
        description="Wall-clock tick timings over the last `perf_window` ticks, sent every `health_every` ticks "
        "(not deterministic); `headroom` = 1 - tick_ms_mean / target_tick_ms.",
    )
    health = obj(
        {
            "kind": {"enum": ["stdout", "file", "tcp", "websocket"]},
            "connected": BOOL,
            "queue_depth": NAT,
            "queue_capacity": NAT,
            "sent": NAT,
            "dropped": NAT,
            "snapshots": NAT,
            "retry_streak": NAT,
            "last_error": STR,
            "last_success_tick": INT,
            "last_failure_tick": INT,
            "drop_rate": UNIT,
            "in_loss": BOOL,
            "alerts": NAT,
            "clients": NAT,
            "path": STR,
            "rotations": NAT,
            "peer": STR,
            "tls": BOOL,
            "url": STR,
        },
        required=["kind", "connected", "queue_depth", "queue_capacity", "sent", "dropped", "retry_streak"],
        description="One transport's health; ticks are -1 until the first success or failure.",
    )
    narration = obj({"tick": NAT, "text": STR, "agent": STR, "category": STR}, required=["tick", "text"])
    perturbation = obj(
        {
            "id": NAT,
            "kind": STR,
            "started": NAT,
            "ends": NAT,
            "target": STR,
            "detail": STR,
            "magnitude": {"type": "number", "exclusiveMinimum": 0},
            "agents": array(STR),
        },
        required=["id", "kind", "started", "ends", "target", "detail"],
    )
    clock = obj(
        {
            "day": NAT,
            "time": HHMM,
            "tick_of_day": NAT,
            "ticks_per_day": NAT,
            "speed": {"enum": ["1x", "10x", "100x", "max"]},
            "paused": BOOL,
        },
        required=["day", "time", "tick_of_day", "ticks_per_day"],
    )
    state = obj(
        {
            "tick": NAT,
            "clock": clock,
            "agents": mapping(ref("agent")),
            "objects": mapping(ref("object")),
            "economy": economy,
            "weather": obj({"state": {"enum": list(WEATHERS)}}),
            "utilities": obj(
                {"power_off": array(STR), "water_off": array(STR), "closed": array(STR)},
                required=["power_off", "water_off"],
            ),
            "kpis": kpis,
            "stability": stability,
            "narration": array(narration),
            "perturbations": array(perturbation),
            "perf": perf,
            "transports": mapping(ref("transport_health")),
            "policy": driving,
            "summary": obj(
                {"population": NAT, "activities": obj({a: NAT for a in ACTIVITIES})},
                description="the whole town, for a viewport viewer (live server, `?view=viewport`)",
            ),
            "view": obj(
                {
                    "mode": {"const": "viewport"},
                    "rect": array(NAT, minItems=4, maxItems=4),
                    "margin": NAT,
                    "max_tiles": NAT,
                },
                description="the rectangle [x0, y0, x1, y1] (tiles, inclusive) a viewport viewer is sent",
            ),
        },
        required=["tick", "clock", "agents", "objects", "economy", "weather", "utilities", "kpis", "narration"],
        description="The whole town; `perf` and `transports` appear when health reporting is on. A live "
        "viewport viewer's state holds only the agents and objects in its `view`, plus `summary`.",
    )
    return {
        "state": state,
        "agent": agent,
        "tie": tie,
        "job": job,
        "object": thing,
        "transport_health": health,
    }


def nullable(schema: Any) -> Any:
    """``schema`` or ``null`` (a key a patch may remove), as a type union where possible (cheap to check)."""
    if "$ref" in schema and schema["$ref"].endswith("_patch"):
        return schema  # patch definitions accept null themselves
    if "$ref" in schema or "const" in schema:
        return {"anyOf": [{"type": "null"}, schema]}
    out = dict(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    if "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = types if "null" in types else [*types, "null"]
    return out


def partial(schema: Any) -> Any:
    """The merge-patch form of a schema: nothing required, removable fields nullable, refs to patch defs."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return {"$ref": schema["$ref"] + "_patch"}
    if schema.get("type") != "object":
        return schema
    out = {k: v for k, v in schema.items() if k not in ("properties", "required", "additionalProperties")}
    required = set(schema.get("required", []))
    if "properties" in schema:
        out["properties"] = {
            k: partial(v) if k in required else nullable(partial(v)) for k, v in schema["properties"].items()
        }
    extra = schema.get("additionalProperties", True)
    out["additionalProperties"] = nullable(partial(extra)) if isinstance(extra, dict) else extra
    return out


def patch_schema(definitions: dict[str, Any]) -> dict[str, Any]:
    """``<name>_patch`` definitions for every definition."""
    return {f"{name}_patch": nullable(partial(body)) for name, body in definitions.items()}


def build_schema() -> dict[str, Any]:
    """The full telemetry schema (JSON Schema draft 2020-12)."""
    defs = _definitions()
    defs.update(patch_schema(defs))
    event = obj(
        {
            "type": {"const": "event"},
            "tick": NAT,
            "kind": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "agent": STR,
            "other": STR,
            "object": STR,
            "value": NUM,
            "detail": STR,
            "transport": STR,
        },
        required=["type", "tick", "kind"],
        description="One event (`kind` is an EventKind value, see docs/telemetry.md); `agent`, `other` and "
        "`object` are ids; fields that do not apply are left out.",
    )
    snapshot = obj(
        {
            "type": {"const": "snapshot"},
            "schema": {"const": SCHEMA_ID},
            "tick": NAT,
            "config_id": STR,
            "seed": NAT,
            "migrations": array(
                obj({"name": STR, "from": STR, "to": STR, "tick": NAT}),
                description="snapshot migrations the state went through (only when any)",
            ),
            "state": ref("state"),
        },
        required=["type", "schema", "tick", "config_id", "seed", "state"],
        description="The whole state after `tick`; a stream starts with one and resynchronises with one.",
    )
    diff = obj(
        {"type": {"const": "diff"}, "tick": NAT, "patch": ref("state_patch")},
        description="JSON Merge Patch (RFC 7386) turning the state after tick-1 into the state after `tick`.",
    )
    error = obj(
        {"type": {"const": "error"}, "code": STR, "message": STR},
        description="A refused viewer message on the live stream (`code` E_INVALID_ARG or E_RATE_LIMITED).",
    )
    defs.update({"snapshot": snapshot, "diff": diff, "event": event, "error": error})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://townlet.dev/schema/telemetry-v{SCHEMA_VERSION}.json",
        "title": "Townlet telemetry message",
        "description": "One line of a Townlet telemetry stream (JSONL): a snapshot, a diff or an event.",
        "version": SCHEMA_VERSION,
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": list(MESSAGE_TYPES)}},
        # dispatch on `type` (cheaper than oneOf, which would try every kind of message)
        "allOf": [{"if": {"properties": {"type": {"const": kind}}}, "then": ref(kind)} for kind in MESSAGE_TYPES],
        "$defs": defs,
    }


def schema_text() -> str:
    """The schema as the published file's text (2-space indent, trailing newline)."""
    return json.dumps(build_schema(), indent=2) + "\n"


@cache
def published_schema() -> dict[str, Any]:
    """The schema file shipped in the package (what ``townlet telemetry schema`` prints)."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def state_schema() -> dict[str, Any]:
    """A standalone schema for the state object alone (used by replay output checks)."""
    schema = copy.deepcopy(published_schema())
    for key in ("type", "required", "properties", "allOf"):
        schema.pop(key)
    schema["$ref"] = "#/$defs/state"
    return schema
