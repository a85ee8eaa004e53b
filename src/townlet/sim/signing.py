"""Snapshot signatures: HMAC-SHA256 with a key set kept beside the console keys, checked before any parsing.

The key set (``snapshots.keys_file``, default ``<console.state_dir>/snapshot-keys.json``, mode 0600) has the
same shape and the same rotation as the console's token keys (:class:`townlet.keys.KeySet`): the active key
signs, every key in the set verifies, a retired key's snapshots stop loading. The first snapshot written
creates the set. Moving snapshots between machines means importing the signing key there
(``townlet snapshot key import``) or re-signing a file the operator vouches for (``townlet snapshot trust``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from townlet.keys import KID, KeySet, StateFileError

if TYPE_CHECKING:
    from townlet.config.models import TownletConfig

SCHEME = b"hmac-sha256"
KEYS_FILE = "snapshot-keys.json"


class SignatureError(Exception):
    """A snapshot whose signature does not verify: unsigned, signed by an unknown key, or altered."""


@dataclass
class SnapshotKeys:
    """The snapshot key set and the size limits a snapshot file must respect.

    Attributes:
        keys: The key set.
        max_bytes: Largest snapshot file accepted.
        max_header_bytes: Largest JSON header accepted.
        max_arrays: Most arrays one snapshot may hold.
    """

    keys: KeySet
    max_bytes: int = 1 << 30
    max_header_bytes: int = 8 << 20
    max_arrays: int = 100_000

    @classmethod
    def from_config(cls, config: TownletConfig | None = None) -> SnapshotKeys:
        """The key set and limits a config names (the shipped defaults when None)."""
        if config is None:
            from townlet.config.models import TownletConfig

            config = TownletConfig()
        snaps = config.snapshots
        path = snaps.keys_file or str(Path(os.path.expanduser(config.console.state_dir)) / KEYS_FILE)
        return cls(KeySet(os.path.expanduser(path)), snaps.max_bytes, snaps.max_header_bytes, snaps.max_arrays)

    def sign(self, magic: bytes, body: bytes) -> bytes:
        """The signature line (``hmac-sha256 KID HEX``, newline-terminated); creates a first key if needed."""
        active = self.keys.active(create=True)
        assert active is not None
        kid, secret = active
        return b"%s %s %s\n" % (SCHEME, kid.encode(), _mac(secret, magic, kid, body).encode())

    def verify(self, line: bytes, magic: bytes, body: bytes, where: str) -> str:
        """Check a signature line against the body; returns the key id.

        Raises:
            SignatureError: unsigned, a key this server does not have, or a mismatch (one clear line each).
        """
        parts = line.split(b" ")
        if len(parts) != 3 or parts[0] != SCHEME or not KID.match(parts[1].decode("ascii", "replace")):
            raise SignatureError(
                f"{where}: not signed - refusing to load it (if you trust where it came from: "
                "townlet snapshot trust FILE)"
            )
        kid = parts[1].decode()
        try:
            secret = self.keys.secret(kid)
        except StateFileError as exc:
            raise SignatureError(f"{where}: cannot check its signature: the snapshot key set {exc}") from None
        if secret is None:
            raise SignatureError(
                f"{where}: signed with key {kid}, which is not in {self.keys.path} - a foreign or "
                "retired key; refusing to load it (import the key with townlet snapshot key "
                "import, or vouch for the file with townlet snapshot trust FILE)"
            )
        if not hmac.compare_digest(_mac(secret, magic, kid, body).encode(), parts[2]):
            raise SignatureError(
                f"{where}: signature mismatch - the file is truncated, corrupt or was edited; refusing to load it"
            )
        return kid


def _mac(secret: bytes, magic: bytes, kid: str, body: bytes) -> str:
    mac = hmac.new(secret, magic, hashlib.sha256)
    mac.update(kid.encode() + b"\n")
    mac.update(body)
    return mac.hexdigest()
