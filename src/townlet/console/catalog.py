"""The console's commands: every command module's set, joined in one stated order into ``REGISTRY``.

A new command module defines ``COMMANDS = Registry()`` and decorates its handlers with ``COMMANDS.command``;
adding it to :data:`MODULES` here is what puts its commands on the console (nothing registers by being
imported).
"""

from __future__ import annotations

from townlet.console import commands, controls, policy, snapshots
from townlet.console.registry import Registry

MODULES = (commands, controls, policy, snapshots)  # world commands, run controls, policy, snapshot and reload

REGISTRY = Registry.joined(*(module.COMMANDS for module in MODULES))

__all__ = ["MODULES", "REGISTRY"]
