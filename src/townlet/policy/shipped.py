"""The shipped default policy: a small checkpoint inside the package, with its scorecard and how it was made.

``policy/default/policy.pt`` is a checkpoint trained by the project's own commands; ``scorecard.json``
beside it records its policy hash, the exact command lines that trained and evaluated it, and its
scorecard next to the scripted routine's and random's on the same fixed-seed suite. ``--policy default``
(every command that runs a town) and the console's ``policy swap ref=default`` load it from here, so a
fresh installation has a learned town without training anything.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from townlet.policy.checkpoint import Checkpoint, CheckpointError, load

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
CHECKPOINT_FILE = DEFAULT_DIR / "policy.pt"
SCORECARD_FILE = DEFAULT_DIR / "scorecard.json"
NAME = "default"


def default_path() -> Path:
    """Where the shipped checkpoint is.

    Raises:
        CheckpointError: it is missing from this installation.
    """
    if not CHECKPOINT_FILE.is_file():
        raise CheckpointError(f"the shipped default policy is missing from this installation ({CHECKPOINT_FILE})")
    return CHECKPOINT_FILE


@cache
def default_card() -> dict[str, Any]:
    """The shipped ``scorecard.json``: ``policy_hash``, ``commands``, ``scorecards`` (policy, scripted, random).

    Raises:
        CheckpointError: it is missing or unreadable.
    """
    try:
        return dict(json.loads(SCORECARD_FILE.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"the shipped default policy's scorecard cannot be read ({exc})") from None


def default_hash() -> str:
    """The shipped policy's hash as its scorecard records it (no torch needed)."""
    return str(default_card()["policy_hash"])


def load_default() -> Checkpoint:
    """Load the shipped checkpoint and check it is the one its scorecard describes.

    Raises:
        CheckpointError: missing, corrupt, or not the policy of the scorecard.
    """
    checkpoint = load(default_path())
    if checkpoint.policy_hash != default_hash():
        raise CheckpointError(
            f"the shipped default policy is {checkpoint.policy_hash}, its scorecard says "
            f"{default_hash()} (a damaged installation)"
        )
    return checkpoint
