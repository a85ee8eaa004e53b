"""Capture of scripted trajectories for behaviour cloning: stress scenarios, npz shards, manifest, checksums.

Each episode runs the scripted town with one *scenario* (a routine day, or a stress: low money, a utility
outage in the middle of an affordance, a price spike, queue contention, lateness) and records, for every
agent at a *decision point* (the points where a semi-MDP policy chooses, :func:`~townlet.policy.options.must_decide`:
its option finished or failed, it just arrived, a need rose past the decision level under its option), what a learned
policy would see and what the scripted routine chose:

| array | shape | meaning |
|---|---|---|
| `obs` | `float32[n, D]` | the observation at the decision point (as the env and `LearnedPolicy` encode it) |
| `mask` | `bool[n, 7]` | the option mask then (the one mask at decision points: what may start, and what runs) |
| `action` | `int8[n]` | the option the routine chooses there, asked with that mask (it may continue the running one) |
| `tick`, `slot` | `int32[n]` | where the sample came from |

The routine is *asked* at each decision point, as a teacher: at a need point it may choose to continue, or to
switch the way it would when it next reconsiders (it does so every ``options.interrupt_every`` ticks, not at
decision points); its random draws are restored after asking, so the recorded town is the routine's own.

One compressed ``.npz`` shard per episode; ``manifest.json`` lists the shards with their sha256, sample
counts, scenario and seed, plus the config_id, observation variant and shapes. :func:`load_dataset`
refuses a dataset whose files do not match their checksums.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from townlet.config.loader import LoadedConfig, load_config
from townlet.config.models import clock_to_tick
from townlet.files import write_atomic
from townlet.observations import ObservationEncoder
from townlet.observations.layout import FeatureLayout, layout_of
from townlet.policy.options import OPTION_COUNT, OPTION_LABELS
from townlet.sim.simulation import Simulation, TickResult
from townlet.world.agents import Activity
from townlet.world.needs import HUNGER, HYGIENE
from townlet.world.rng import RngStreams
from townlet.world.state import World

FORMAT = "townlet-bc-dataset/2"
MANIFEST = "manifest.json"
ARRAYS = ("obs", "mask", "action", "tick", "slot")


class DatasetError(ValueError):
    """A dataset directory is missing, incomplete, or its files do not match their checksums."""


# -- scenarios --------------------------------------------------------------------------------------------

Inject = Callable[[Simulation], None]


@dataclass(frozen=True)
class Scenario:
    """A way to stress the scripted town while it is recorded.

    Attributes:
        name: Scenario name (``routine``, ``low_money``...).
        overrides: Extra ``--set`` style config overrides.
        inject: Called at the start of every tick (as a console-style command); changes the town through
            world methods when its moment comes.
    """

    name: str
    overrides: tuple[str, ...] = ()
    inject: Inject | None = None


def _once(at: int, change: Callable[[Simulation], None]) -> Inject:
    """An injection that fires on the first tick ``>= at`` (and only once)."""
    done = [False]

    def inject(sim: Simulation) -> None:
        if not done[0] and sim.tick >= at:
            done[0] = True
            change(sim)

    return inject


def _low_money(sim: Simulation) -> None:
    """A share of the agents is left nearly broke, with almost no food in the cupboard."""
    cfg = sim.config.imitation.capture
    a, world = sim.world.agents, sim.world
    slots = a.slots()
    raw = a.item_index.get("raw_food")
    for slot in slots[: max(1, round(len(slots) * cfg.low_money_share))]:
        excess = float(a.wallet[slot]) - cfg.low_money_wallet
        if excess > 0:
            world.economy.transfer_to_treasury(int(slot), world, excess, "fees")
        if raw is not None:
            a.inventory[slot, raw] = min(int(a.inventory[slot, raw]), cfg.low_money_food)


def _outage_mid_use(after: int) -> Inject:
    """Once past ``after`` (tick of day), cut water or power where someone is using an object that needs it."""
    done = [False]

    def inject(sim: Simulation) -> None:
        w = sim.world
        if done[0] or w.tick % w.ticks_per_day < after:
            return
        a, m = w.agents, w.manifest
        for slot in np.flatnonzero(a.alive & (a.activity == Activity.USING) & (a.target_aff >= 0)):
            aff = int(a.target_aff[slot])
            kind = "water" if m.requires_water[aff] else "power" if m.requires_power[aff] else None
            if kind is not None:
                place = int(w.objects.place[a.target_obj[slot]])
                duration = sim.config.imitation.capture.outage_duration
                w.utilities.set(w, kind, False, place=place, until=w.tick + duration)
                done[0] = True
                return

    return inject


def _price_spike(sim: Simulation) -> None:
    cfg = sim.config.imitation.capture
    for item in sim.world.economy.prices:
        sim.perturbations.trigger(
            "price_spike", item=item, magnitude=cfg.price_spike_magnitude, duration=cfg.price_spike_duration
        )


def _contention(sim: Simulation) -> None:
    """The homes' water is off and everybody needs a wash at once: one line at the public showers."""
    cfg = sim.config.imitation.capture
    w = sim.world
    for home in w.homes:
        w.utilities.set(w, "water", False, place=int(home), until=w.tick + cfg.contention_duration)
    level = sim.config.options.hygiene_trigger
    for slot in w.agents.slots():
        w.set_need(int(slot), "hygiene", max(float(w.agents.needs[slot, HYGIENE]), level))


def _lateness(sim: Simulation) -> None:
    """Just before the shifts, the employed are made hungry enough to eat first and arrive late."""
    w = sim.world
    level = sim.config.needs.critical
    for slot in np.flatnonzero(w.agents.alive & (w.agents.job >= 0)):
        w.set_need(int(slot), "hunger", max(float(w.agents.needs[slot, HUNGER]), level))


def scenarios(loaded: LoadedConfig) -> dict[str, Callable[[], Scenario]]:
    """Scenario factories by name (each call builds fresh per-episode state)."""
    cfg = loaded.config.imitation.capture
    tpd = loaded.config.time.ticks_per_day
    first_shift = min(
        (clock_to_tick(job.shift_start, tpd) for job in loaded.config.employment.jobs.values()), default=tpd // 3
    )
    at = lambda clock: clock_to_tick(clock, tpd)  # noqa: E731 - a unit conversion
    return {
        "routine": lambda: Scenario("routine"),
        "low_money": lambda: Scenario("low_money", inject=_once(0, _low_money)),
        "outage": lambda: Scenario("outage", inject=_outage_mid_use(at(cfg.outage_after))),
        "price_spike": lambda: Scenario("price_spike", inject=_once(at(cfg.price_spike_at), _price_spike)),
        "queue_contention": lambda: Scenario("queue_contention", inject=_once(at(cfg.contention_at), _contention)),
        "lateness": lambda: Scenario("lateness", inject=_once(max(first_shift - cfg.lateness_lead, 0), _lateness)),
    }


SCENARIOS = ("routine", "low_money", "outage", "price_spike", "queue_contention", "lateness")


def step_scenario(sim: Simulation, scenario: Scenario, actions: np.ndarray | None = None) -> TickResult:
    """One tick of ``sim`` under ``scenario`` (its injection runs as a command, so its events are kept)."""
    if scenario.inject is not None:
        inject = scenario.inject
        sim.enqueue(lambda _world: inject(sim))
    return sim.step(actions)


# -- recording --------------------------------------------------------------------------------------------


def _write_npz(arrays: dict[str, np.ndarray], handle: BinaryIO) -> None:
    """Write ``arrays`` to the open file as a compressed ``.npz``."""
    # numpy's stub types **kwds beside ``allow_pickle: bool``, so any ``**dict[str, ndarray]`` is flagged
    np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]


def record_episode(
    loaded: LoadedConfig,
    scenario: Scenario,
    seed: int,
    ticks: int,
    variant: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run the scripted town for ``ticks`` under ``scenario`` and return the episode's decision samples.

    At each decision point the routine is asked what it would choose there, with that mask (its random
    draws are put back, so asking changes nothing in the town). ``loaded`` must already include the
    scenario's overrides (see :func:`capture`).
    """
    sim = Simulation(loaded, seed=seed)
    world = sim.world
    encoder = ObservationEncoder(world, variant)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    stream = world.rng.policy.bit_generator
    for t in range(ticks):
        live = sim.controller.deciding().nonzero()[0]
        if len(live):
            obs = encoder.encode()[live]
            mask = sim.masks(decision_points=True)[live]
            drawn = stream.state
            labels = [sim.policy.choose(world, int(s), row) for s, row in zip(live, mask, strict=True)]
            stream.state = drawn
            parts["obs"].append(obs.copy())
            parts["mask"].append(mask)
            parts["action"].append(np.array(labels, dtype=np.int8))
            parts["tick"].append(np.full(len(live), sim.tick, dtype=np.int32))
            parts["slot"].append(live.astype(np.int32))
        step_scenario(sim, scenario)
        if progress is not None:
            progress(t + 1)
    empty = {
        "obs": np.zeros((0, encoder.size), np.float32),
        "mask": np.zeros((0, OPTION_COUNT), bool),
        "action": np.zeros(0, np.int8),
        "tick": np.zeros(0, np.int32),
        "slot": np.zeros(0, np.int32),
    }
    return {name: np.concatenate(chunks) if chunks else empty[name] for name, chunks in parts.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def capture(
    config: str | Path | None,
    out: str | Path,
    *,
    overrides: Iterable[str] = (),
    scenario_names: Iterable[str] | None = None,
    seeds: int | None = None,
    ticks: int | None = None,
    variant: str | None = None,
    first_seed: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Record every scenario for ``seeds`` episodes into ``out`` (shards + manifest); return the manifest.

    ``config`` and ``overrides`` are as for ``townlet run``; defaults come from ``imitation.capture``;
    ``variant`` defaults to ``features.observations``. ``progress(label, done, total)`` is called as ticks go by.
    """
    overrides = list(overrides)
    loaded = load_config(config, overrides)
    cfg = loaded.config.imitation.capture
    names = list(scenario_names or cfg.scenarios)
    factories = scenarios(loaded)
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)} (known: {', '.join(factories)})")
    seeds = cfg.seeds if seeds is None else seeds
    ticks = cfg.ticks if ticks is None else ticks
    variant = variant or loaded.config.features.observations
    base_seed = int(loaded.config.seed if first_seed is None else first_seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = []
    total = len(names) * seeds * ticks
    done = 0
    obs_dim = 0
    for name in names:
        for k in range(seeds):
            seed = base_seed + k
            label = f"{name} seed {seed}"
            offset = done

            def tick_progress(t: int, label: str = label, offset: int = offset) -> None:
                if progress is not None:
                    progress(label, offset + t, total)

            scenario = factories[name]()
            episode = load_config(config, [*overrides, *scenario.overrides]) if scenario.overrides else loaded
            arrays = record_episode(episode, scenario, seed, ticks, variant, tick_progress)
            done += ticks
            obs_dim = int(arrays["obs"].shape[1])
            path = out / f"{name}-{seed}.npz"
            write_atomic(path, partial(_write_npz, arrays))
            shards.append(
                {
                    "file": path.name,
                    "sha256": _sha256(path),
                    "scenario": name,
                    "seed": seed,
                    "ticks": ticks,
                    "config_id": episode.config_id,
                    "samples": int(len(arrays["action"])),
                }
            )
    manifest = {
        "format": FORMAT,
        "config_id": loaded.config_id,
        "config": str(loaded.source),
        "overrides": overrides,
        "variant": variant,
        "obs_dim": obs_dim,
        "n_actions": OPTION_COUNT,
        "actions": list(OPTION_LABELS),
        "scenarios": names,
        "seeds": seeds,
        "ticks": ticks,
        "samples": sum(s["samples"] for s in shards),
        "shards": shards,
    }
    write_atomic(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


# -- loading ----------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """A loaded capture: the manifest and every shard's arrays (in manifest order).

    Attributes:
        root: The dataset directory.
        manifest: The parsed ``manifest.json``.
        shards: Per shard, its arrays by name.
    """

    root: Path
    manifest: dict[str, Any]
    shards: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def variant(self) -> str:
        """Observation variant the samples were encoded with."""
        return str(self.manifest["variant"])

    @property
    def obs_dim(self) -> int:
        """Observation length."""
        return int(self.manifest["obs_dim"])

    def layout(self) -> FeatureLayout:
        """The observation layout of the samples (rebuilt from the config the capture ran with)."""
        loaded = load_config(self.manifest.get("config"), list(self.manifest.get("overrides", [])))
        layout = layout_of(World(loaded, RngStreams(0)), self.variant)
        if layout.size != self.obs_dim:
            raise DatasetError(
                f"{self.root}: samples have {self.obs_dim} features but the capture's config now "
                f"lays out {layout.size} ({self.variant}); was the config changed?"
            )
        return layout

    def join(self, indices: Iterable[int]) -> dict[str, np.ndarray]:
        """The samples of the given shards concatenated."""
        chosen = [self.shards[i] for i in indices]
        if not chosen:
            return {name: np.zeros((0,), dtype=np.float32) for name in ARRAYS}
        return {name: np.concatenate([s[name] for s in chosen]) for name in ARRAYS}


def verify_dataset(root: str | Path) -> dict[str, Any]:
    """Check the manifest and every shard's checksum; return the manifest (raises :class:`DatasetError`)."""
    root = Path(root)
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{root}: no {MANIFEST} (not a captured dataset)") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        older = manifest.get("format") == "townlet-bc-dataset/1"
        hint = " (an older capture of every tick: capture it again)" if older else ""
        raise DatasetError(f"{path}: not a {FORMAT} manifest{hint}")
    for shard in manifest["shards"]:
        file = root / shard["file"]
        if not file.exists():
            raise DatasetError(f"{file}: shard listed in the manifest is missing")
        if _sha256(file) != shard["sha256"]:
            raise DatasetError(f"{file}: checksum mismatch (the shard changed or is corrupt)")
    return manifest


def load_dataset(root: str | Path) -> Dataset:
    """Verify and load a captured dataset."""
    root = Path(root)
    manifest = verify_dataset(root)
    data = Dataset(root, manifest)
    for shard in manifest["shards"]:
        with np.load(root / shard["file"]) as npz:
            arrays = {name: npz[name] for name in ARRAYS}
        if len(arrays["action"]) != shard["samples"]:
            raise DatasetError(
                f"{root / shard['file']}: {len(arrays['action'])} samples, manifest says {shard['samples']}"
            )
        data.shards.append(arrays)
    return data
