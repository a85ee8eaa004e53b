"""The observation layout: every feature's name, index range, units and normalisation, per variant.

The encoders write features at the offsets this layout assigns, and docs/observations.md is generated from
it (``python -m townlet.observations``), so the document and the vectors cannot drift apart. The layout
depends only on the config (variant, map window, embedding size, items, affordances, object types).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from townlet.config.models import NEED_NAMES, OPTION_NAMES
from townlet.config.vocabulary import ACTIVITIES, DIRECTIONS, OBSERVED_TRAITS, TARGETS, VARIANTS, WEATHERS

if TYPE_CHECKING:
    from townlet.config.loader import LoadedConfig
    from townlet.world.state import World

TRAITS = OBSERVED_TRAITS
STATIC_CHANNELS = ("blocked", "door", "outdoors", "queue_node")
DYNAMIC_CHANNELS = ("agents", "busy", "queue_length")


@dataclass(frozen=True, slots=True)
class Feature:
    """One documented feature (or a strided map channel).

    Attributes:
        name: Dotted name (``needs.hunger``, ``map.agents``).
        start: First index in the observation vector.
        stop: One past the last index.
        step: Stride between consecutive elements (map channels: the channel count).
        units: What the raw quantity measures.
        normalisation: How the raw quantity becomes the float in the vector.
    """

    name: str
    start: int
    stop: int
    step: int
    units: str
    normalisation: str

    @property
    def index(self) -> str:
        """The index range as text: ``12``, ``12-15`` or ``300-1507 step 23``."""
        if self.stop - self.start == 1:
            return str(self.start)
        if self.step == 1:
            return f"{self.start}-{self.stop - 1}"
        return f"{self.start}-{self.stop - 1} step {self.step}"


@dataclass
class FeatureLayout:
    """Ordered features of one variant and the offsets of the blocks encoders write.

    Attributes:
        variant: ``full``, ``hybrid`` or ``compact``.
        features: Documented features in vector order.
        blocks: Block name -> (start, stop) of each contiguous block the encoders fill.
        size: Length of the observation vector.
        window: Map window side (0 for compact).
        channels: Map channel names in order (empty for compact).
    """

    variant: str
    features: list[Feature] = field(default_factory=list)
    blocks: dict[str, tuple[int, int]] = field(default_factory=dict)
    size: int = 0
    window: int = 0
    channels: tuple[str, ...] = ()

    def add(self, name: str, units: str, normalisation: str, width: int = 1) -> int:
        """Append a feature of ``width`` consecutive floats; return its start index."""
        start = self.size
        self.features.append(Feature(name, start, start + width, 1, units, normalisation))
        self.size += width
        return start

    def begin(self, block: str) -> None:
        """Mark the start of a block."""
        self.blocks[block] = (self.size, self.size)

    def end(self, block: str) -> None:
        """Mark the end of a block."""
        self.blocks[block] = (self.blocks[block][0], self.size)

    def index(self, name: str) -> int:
        """Start index of a feature by name."""
        for f in self.features:
            if f.name == name:
                return f.start
        raise KeyError(name)

    def span(self, name: str) -> slice:
        """Index slice (with stride) of a feature by name."""
        for f in self.features:
            if f.name == name:
                return slice(f.start, f.stop, f.step)
        raise KeyError(name)

    def map_cell(self, row: int, col: int, channel: str) -> int:
        """Index of one map cell's channel (row/col 0 at the window's top left; the agent is at the centre)."""
        start, _ = self.blocks["map"]
        return start + (row * self.window + col) * len(self.channels) + self.channels.index(channel)

    def markdown(self) -> str:
        """The layout as a markdown table (name, index, units, normalisation)."""
        lines = ["| feature | index | units | normalisation |", "|---|---|---|---|"]
        for f in self.features:
            lines.append(f"| `{f.name}` | {f.index} | {f.units} | {f.normalisation} |")
        return "\n".join(lines)


def build_layout(  # noqa: C901
    variant: str,
    items: tuple[str, ...],
    affordances: tuple[str, ...],
    object_types: tuple[str, ...],
    loaded: LoadedConfig,
) -> FeatureLayout:
    """The layout of ``variant`` for a config with these items, affordances and object types."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown observation variant {variant!r} (one of {', '.join(VARIANTS)})")
    cfg = loaded.config
    obs = cfg.observations
    lay = FeatureLayout(variant)
    lay.begin("common")
    for need in NEED_NAMES:
        lay.add(f"needs.{need}", "deficit in [0, 1] (0 satisfied)", "as is")
    lay.add("wallet", "meal units", f"tanh(wallet / {obs.wallet_scale:g})")
    for item in items:
        lay.add(f"inventory.{item}", "count", f"min(count / {obs.inventory_scale}, 1)")
    lay.add("time.sin", "tick of day", "sin(2π · tick_of_day / ticks_per_day)")
    lay.add("time.cos", "tick of day", "cos(2π · tick_of_day / ticks_per_day)")
    lay.add("job.has_job", "flag", "1 employed, else 0")
    lay.add("job.on_shift", "flag", "1 between shift start and end (today), else 0")
    lay.add("job.late", "flag", "1 on shift and not yet clocked in today, else 0")
    lay.add("job.until_shift", "ticks", "((shift_start − tick_of_day) mod ticks_per_day) / ticks_per_day; 0 unemployed")
    for label in OPTION_NAMES:
        lay.add(f"option.{label}", "flag", "one-hot of the running option (all 0: none)")
    lay.add("option.commitment_left", "ticks", "commitment window left / options.commitment_window")
    for act in ACTIVITIES:
        lay.add(f"activity.{act}", "flag", "one-hot of what the body is doing")
    for aff in affordances:
        lay.add(f"last_action.{aff}", "flag", "one-hot of the last completed affordance (all 0: none yet)")
    lay.add("last_action.success", "flag", "1 if the last step succeeded")
    lay.add("last_action.duration", "ticks", f"min(duration / {obs.duration_scale}, 1)")
    lay.add("ctx_reset", "flag", "1 on an agent's first observation (episode start or arrival), else 0")
    for state in WEATHERS:
        lay.add(f"weather.{state}", "flag", "one-hot of the weather")
    for trait in TRAITS:
        lay.add(f"personality.{trait}", "trait in [-1, 1]", "as is")
    dim = cfg.identity.embedding_dim
    for kind, key in (("friend", "trust > 0, by trust"), ("rival", "rivalry > 0, by rivalry")):
        for i in range(1, obs.social_top + 1):
            base = f"social.{kind}{i}"
            lay.add(
                f"{base}.embedding",
                "id embedding",
                f"unit vector of the other's identity slot ({dim} floats; 0 when no such tie: {key})",
                dim,
            )
            for comp in ("trust", "familiarity", "rivalry"):
                lay.add(f"{base}.{comp}", "tie component in [-1, 1]", "as is; 0 when no such tie")
    radius = obs.local_radius
    near = f"ties to agents within {radius} tiles (Chebyshev)"
    lay.add("local.mean_trust", "trust", f"mean over {near}; 0 if none")
    lay.add("local.max_trust", "trust", f"max over {near}; 0 if none")
    lay.add("local.mean_rivalry", "rivalry", f"mean over {near}; 0 if none")
    lay.add("local.max_rivalry", "rivalry", f"max over {near}; 0 if none")
    lay.add("local.agents_nearby", "agents", f"min(others within {radius} tiles / {obs.crowd_scale}, 1)")
    lay.add("flag.in_queue", "flag", "1 while waiting in an object's queue")
    lay.add("flag.queue_position", "places", f"min(position in queue (1 = head) / {obs.queue_scale}, 1); 0 not queued")
    lay.add(
        "flag.rival_in_queue",
        "flag",
        "1 if an agent it has rivalry > 0 toward is in the same line (queue, holder or user of its object)",
    )
    lay.add("flag.home_power", "flag", "1 if its home has power")
    lay.add("flag.home_water", "flag", "1 if its home has water")
    lay.end("common")
    lay.begin("targets")
    what = {
        "shower": "own home's shower or a public one",
        "fridge": "own home's fridge",
        "till": "a grocer till",
        "home": "own home's bed",
        "work": "own workstation",
    }
    for t in TARGETS:
        lay.add(f"target.{t}.present", "flag", f"1 if it has one ({what[t]}) within reach, else 0")
        lay.add(f"target.{t}.distance", "tiles (path)", f"min(path distance / {obs.distance_scale:g}, 1); 1 absent")
        lay.add(f"target.{t}.dx", "bearing", "x (east +) of the unit vector toward the nearest one; 0 absent")
        lay.add(f"target.{t}.dy", "bearing", "y (south +) of the unit vector toward the nearest one; 0 absent")
    lay.end("targets")
    if variant == "compact":
        lay.begin("path_hint")
        for d in DIRECTIONS:
            lay.add(
                f"path_hint.{d}",
                "flag",
                "one-hot next step toward its destination (or, when not walking, toward the target of "
                "its largest need: hunger fridge, hygiene shower, energy/social home); all 0 when there",
            )
        lay.end("path_hint")
        return lay
    w = obs.window
    lay.window = w
    if variant == "hybrid":
        channels: tuple[str, ...] = ("blocked", "agents")
    else:
        channels = STATIC_CHANNELS + DYNAMIC_CHANNELS + tuple(f"object.{t}" for t in object_types)
    lay.channels = channels
    lay.begin("map")
    start = lay.size
    c = len(channels)
    for k, ch in enumerate(channels):
        units, norm = _channel_doc(ch, obs.crowd_scale, obs.queue_scale, obs.distance_scale)
        lay.features.append(Feature(f"map.{ch}", start + k, start + w * w * c, c, units, norm))
    lay.size = start + w * w * c
    lay.end("map")
    if variant == "full":
        lay.begin("hints")
        for t in TARGETS:
            units, norm = _channel_doc(f"hint.{t}", obs.crowd_scale, obs.queue_scale, obs.distance_scale)
            lay.add(f"hint.{t}", units, f"{norm}; a {w}×{w} plane (row, column)", w * w)
        lay.end("hints")
    return lay


def _channel_doc(channel: str, crowd: int, queue: int, scale: float) -> tuple[str, str]:
    if channel == "blocked":
        return "flag", "1 wall, counter, object or outside the map"
    if channel == "door":
        return "flag", "1 door tile"
    if channel == "outdoors":
        return "flag", "1 road or grass (holds any number of agents)"
    if channel == "queue_node":
        return "flag", "1 queue-node tile"
    if channel == "agents":
        return "agents", f"min(other agents on the tile / {crowd}, 1)"
    if channel == "busy":
        return "flag", "1 on an object that is reserved or in use"
    if channel == "queue_length":
        return "agents", f"min(queue length / {queue}, 1) on an object tile"
    if channel.startswith("object."):
        return "flag", f"1 on a {channel[7:]} tile"
    return "tiles (path)", (
        f"per window cell: 1 − min(path distance from the cell to the agent's nearest "
        f"{channel[5:]} target / {scale:g}, 1); 0 unreachable or outside the map"
    )


def layout_of(world: World, variant: str | None = None) -> FeatureLayout:
    """The layout for a world (variant: ``features.observations`` unless given)."""
    return build_layout(
        variant or world.config.features.observations,
        world.agents.items,
        tuple(a.id for a in world.manifest.affordances),
        world.objects.type_names,
        world.loaded,
    )


def document(loaded: LoadedConfig | None = None) -> str:
    """The feature tables of every variant for a config (the shipped one by default), as markdown."""
    from townlet.config.loader import load_config
    from townlet.world.rng import RngStreams
    from townlet.world.state import World

    world = World(loaded or load_config(), RngStreams(0))
    parts = []
    for variant in VARIANTS:
        lay = layout_of(world, variant)
        shape = f"{lay.size} floats"
        if lay.window:
            shape += f"; map block {lay.window}×{lay.window}×{len(lay.channels)} (row, column, channel)"
        if "hints" in lay.blocks:
            shape += f"; hint planes {len(TARGETS)}×{lay.window}×{lay.window} (target, row, column)"
        parts.append(f"### `{variant}` ({shape})\n\n{lay.markdown()}\n")
    return "\n".join(parts)
