"""Whether a policy checkpoint may drive a town: observation variant and size, option set, and config.

One rule, used by the command line (``--policy``), the policy registry (``promote``) and the console
(``policy swap``/``promote``) alike. A checkpoint *fits* a town when

| check | holds when |
|---|---|
| `variant` | the checkpoint reads the town's observation variant (`features.observations`) |
| `observation size` | the checkpoint's input length is what that variant produces in this town |
| `option set` | the town takes options (`env.action_level: options`) and the checkpoint chooses among exactly them |
| `config` | trained under this town's config_id, or the same config's (file, `--set`) at another stage or none |

A *runnable* check (``strict=False``: size and option set only) is what the evaluation suite asks: it scores
a policy on any town it can read, on purpose across variants and stages (the A/B gate).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from townlet.config.loader import LoadedConfig, compute_config_id, load_config
from townlet.config.models import TownletConfig
from townlet.observations.layout import VARIANTS, layout_of
from townlet.policy.checkpoint import Checkpoint, CheckpointError
from townlet.policy.options import OPTION_COUNT, OPTION_LABELS

if TYPE_CHECKING:
    from townlet.world.state import World


class IncompatiblePolicy(CheckpointError):
    """A checkpoint that does not fit the town it was asked to drive; ``differences`` names each mismatch."""

    def __init__(self, policy_hash: str, differences: list[str]) -> None:
        super().__init__(f"policy {policy_hash} does not fit this town: {'; '.join(differences)}")
        self.policy_hash = policy_hash
        self.differences = differences


@cache
def _family(source: Path, overrides: tuple[str, ...], stages: tuple[str, ...]) -> dict[str, str]:
    family: dict[str, str] = {}
    for stage in (None, *stages):  # as `townlet train --stage` loads it: the stage after every other override
        loaded = load_config(source, [*overrides, f"stage={stage or 'null'}"])
        family.setdefault(loaded.config_id, f"stage {stage}" if stage else "no stage")
    return family


def config_family(loaded: LoadedConfig) -> dict[str, str]:
    """config_id -> label of this town's config, and of the same config with no stage and at each stage.

    The same config means the same file and ``--set`` overrides; for a config rebuilt without its overrides
    (a snapshot's), the same config with each stage's features folded in.
    """
    family = {loaded.config_id: "this town"}
    stages = tuple(loaded.config.stages)
    if loaded.overrides is not None:
        for config_id, label in _family(loaded.source, loaded.overrides, stages).items():
            family.setdefault(config_id, label)
        return family
    raw = loaded.config.model_dump(mode="json")
    for name in stages:
        body = copy.deepcopy(raw)
        body["stage"] = name
        body["features"].update(loaded.config.stages[name].features)
        config = TownletConfig.model_validate(body)
        family.setdefault(compute_config_id(config, loaded.map_path, loaded.affordances_path), f"stage {name}")
    return family


def differences(checkpoint: Checkpoint, world: World, strict: bool = True) -> list[str]:
    """Every way ``checkpoint`` does not fit ``world``'s town (empty: it fits).

    Args:
        checkpoint: The policy.
        world: The town it would drive.
        strict: Also require the same variant and config (family); False checks only what running needs.
    """
    cfg = world.config
    found: list[str] = []
    town_variant = str(cfg.features.observations)
    if strict and checkpoint.variant != town_variant:
        found.append(f"variant: the policy reads {checkpoint.variant} observations, this town's are {town_variant}")
    if checkpoint.variant not in VARIANTS:
        found.append(f"variant: the policy reads unknown observations {checkpoint.variant!r}")
    else:
        size = layout_of(world, checkpoint.variant).size
        if checkpoint.spec.obs_dim != size:
            found.append(
                f"observation size: the policy reads {checkpoint.spec.obs_dim} features, this town gives "
                f"{size} ({checkpoint.variant})"
            )
    if cfg.env.action_level != "options":
        found.append(
            f"option set: this town takes {cfg.env.action_level} (env.action_level), a policy drives it with options"
        )
    elif checkpoint.spec.n_actions != OPTION_COUNT:
        found.append(
            f"option set: the policy chooses among {checkpoint.spec.n_actions} actions, this town's options "
            f"are the {OPTION_COUNT} of {', '.join(OPTION_LABELS)}"
        )
    if strict:
        family = config_family(world.loaded)
        if checkpoint.config_id not in family:
            stages = [label.removeprefix("stage ") for label in family.values() if label.startswith("stage ")]
            nor = f" nor that of its stages {', '.join(stages)}" if stages else ""
            found.append(
                f"config: trained under config {checkpoint.config_id}, not this town's "
                f"{world.loaded.config_id}{nor} (run it with the config and --set overrides it was "
                "trained with)"
            )
    return found


def check(checkpoint: Checkpoint, world: World, strict: bool = True) -> None:
    """Refuse a checkpoint that does not fit ``world``'s town.

    Raises:
        IncompatiblePolicy: one line naming every difference.
    """
    found = differences(checkpoint, world, strict)
    if found:
        raise IncompatiblePolicy(checkpoint.policy_hash, found)


def check_config(checkpoint: Checkpoint, loaded: LoadedConfig, strict: bool = True) -> None:
    """:func:`check` against a config rather than a running town (a town of that config is built to measure it).

    Raises:
        IncompatiblePolicy: one line naming every difference.
    """
    from townlet.world.rng import RngStreams
    from townlet.world.state import World

    check(checkpoint, World(loaded, RngStreams(0)), strict)
