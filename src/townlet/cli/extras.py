"""Optional extras a command needs: checked when it starts, with one line naming the extra to install."""

from __future__ import annotations

import importlib.util
import sys

# What each extra of pyproject.toml brings that commands import (module names).
EXTRAS = {
    "train": ("torch", "matplotlib", "ray"),
    "ecosystem": ("supersuit", "stable_baselines3", "sb3_contrib", "torchrl", "ray.rllib"),
}


def missing_extra(command: str, extra: str, modules: tuple[str, ...] | None = None) -> int | None:
    """Check that ``modules`` (the extra's, by default) import; else print one line and return exit code 2.

    Returns None when everything is there, so a command starts with
    ``if (code := missing_extra("train", "train")) is not None: return code``.
    """
    wanted = EXTRAS[extra] if modules is None else modules
    absent = [m for m in wanted if not _importable(m)]
    if not absent:
        return None
    print(
        f"townlet {command}: needs the '{extra}' extra ({', '.join(absent)} missing): pip install 'townlet[{extra}]'",
        file=sys.stderr,
    )
    return 2


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a stub with no spec
        return False
