"""Secret key sets on disk: HMAC keys by key id, the active one, rotation and retirement; watched JSON files.

A key set is a JSON file (mode 0600) ``{"active": KID, "keys": {KID: {"secret": base64url, "created": unix}}}``.
The console's token keys and the snapshot signing keys are two such files side by side in the state
directory; both are re-read whenever their file changes, so rotation and retirement need no restart.

:class:`WatchedJson` is the re-read-on-change JSON file both use (and the console's revocation list). It
never serves stale data: a file that disappeared or no longer parses is reported as such
(:class:`StateFileError`), and each caller decides what that means (no keys, or refuse everything).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from townlet.files import write_atomic

KID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SECRET_BYTES = 32
MAX_STATE_FILE_BYTES = 16 * 2**20  # a key set or revocation list larger than this is not ours


class StateFileError(Exception):
    """A watched state file that is missing or cannot be used; ``reason`` is ``missing`` or says what is wrong."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    @property
    def missing(self) -> bool:
        """Whether the file does not exist (as opposed to existing but unusable)."""
        return self.reason == "missing"


class WatchedJson:
    """A JSON object file re-read whenever its inode, modification time or size changes.

    Args:
        path: The file.
        check: Validates the parsed object (raises ``ValueError`` with the reason when it is malformed).
    """

    def __init__(self, path: Path, check: Callable[[Any], None]) -> None:
        self.path = path
        self.check = check
        self._stamp: tuple[int, int, int] | None | str = "unread"
        self._data: dict[str, Any] | None = None
        self._error: StateFileError | None = None

    def get(self) -> dict[str, Any]:
        """The current contents.

        Raises:
            StateFileError: the file is missing, unreadable, not JSON or malformed (never stale data).
        """
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            raise StateFileError(self.path, f"cannot read ({exc.strerror or exc})") from None
        if stamp != self._stamp:
            self._stamp = stamp
            self._data, self._error = None, None
            if stamp is None:
                self._error = StateFileError(self.path, "missing")
            else:
                try:
                    self._data = self._parse(stamp[2])
                except StateFileError as exc:
                    self._error = exc
        if self._error is not None:
            raise self._error
        assert self._data is not None
        return self._data

    def _parse(self, size: int) -> dict[str, Any]:
        if size > MAX_STATE_FILE_BYTES:
            raise StateFileError(self.path, f"larger than {MAX_STATE_FILE_BYTES} bytes")
        try:
            data = orjson.loads(self.path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            self.check(data)
        except OSError as exc:
            raise StateFileError(self.path, f"cannot read ({exc.strerror or exc})") from None
        except (ValueError, TypeError, KeyError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise StateFileError(self.path, f"corrupt ({str(exc)[:200]})") from None
        return data

    def put(self, data: dict[str, Any], mode: int = 0o600, exclusive: bool = False) -> None:
        """Write atomically (``exclusive``: only if the file does not exist yet; raises ``FileExistsError``)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(
            self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n", permissions=mode, exclusive=exclusive
        )
        self._stamp = "unread"  # re-read (and re-stamp) on next use


def _check_key_set(data: Any) -> None:
    keys = data["keys"]
    if not isinstance(keys, dict):
        raise ValueError("keys must be an object")
    for kid, entry in keys.items():
        if not KID.match(kid) or not isinstance(entry, dict) or not isinstance(entry.get("secret"), str):
            raise ValueError(f"bad key entry {kid[:64]!r}")
    active = data.get("active")
    if active is not None and active not in keys:
        raise ValueError("the active key is not in the set")


def new_kid() -> str:
    """A fresh key id: the UTC time and a random suffix (``k20250101120000-ab12cd``)."""
    return f"k{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def _entry(secret: bytes) -> dict[str, Any]:
    return {"secret": base64.urlsafe_b64encode(secret).decode().rstrip("="), "created": int(time.time())}


class KeySet:
    """HMAC secrets by key id, one of them active (signs new material); re-read when the file changes.

    A missing file is an empty set; a corrupt one raises :class:`StateFileError` from every lookup, so
    nothing verifies against keys that cannot be read.

    Args:
        path: The key set file (created, mode 0600 in a 0700 folder, by :meth:`rotate` or :meth:`active`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.file = WatchedJson(self.path, _check_key_set)

    def data(self) -> dict[str, Any]:
        """The parsed file (an empty set when missing).

        Raises:
            StateFileError: when the file exists but cannot be used.
        """
        try:
            return self.file.get()
        except StateFileError as exc:
            if exc.missing:
                return {"active": None, "keys": {}}
            raise

    def secret(self, kid: str) -> bytes | None:
        """The secret of ``kid``, or None when the set has no such key."""
        entry = self.data()["keys"].get(kid)
        if entry is None:
            return None
        return base64.urlsafe_b64decode(entry["secret"] + "==")

    def active(self, create: bool = True) -> tuple[str, bytes] | None:
        """The active key id and secret; a first key is created (``create``) when the set is empty."""
        data = self.data()
        if data["active"] is None:
            if not create:
                return None
            self._create_first()
            data = self.data()
        kid = data["active"]
        secret = self.secret(kid)
        assert secret is not None
        return kid, secret

    def _create_first(self) -> None:
        data = self.data()
        if data["active"] is not None:
            return
        kid = new_kid()
        fresh = {**data, "active": kid, "keys": {**data["keys"], kid: _entry(secrets.token_bytes(SECRET_BYTES))}}
        try:
            self.file.put(fresh, exclusive=not self.path.exists())
        except FileExistsError:  # another process created the set first: use theirs
            pass

    def rotate(self, retire_others: bool = False) -> str:
        """Make a fresh key active; older keys keep verifying unless ``retire_others``. Returns the new id."""
        data = self.data()
        kid = new_kid()
        keys = {} if retire_others else dict(data["keys"])
        keys[kid] = _entry(secrets.token_bytes(SECRET_BYTES))
        self.file.put({**data, "active": kid, "keys": keys})
        return kid

    def retire(self, kid: str) -> None:
        """Remove a key: what it signed stops verifying at once.

        Raises:
            KeyError: no such key.
            ValueError: it is the active key (rotate first).
        """
        data = self.data()
        if kid not in data["keys"]:
            raise KeyError(kid)
        if kid == data["active"]:
            raise ValueError("cannot retire the active key; rotate first")
        self.file.put({**data, "keys": {k: v for k, v in data["keys"].items() if k != kid}})

    def ids(self) -> tuple[str | None, list[str]]:
        """The active key id and every key id in the set."""
        data = self.data()
        return data["active"], sorted(data["keys"])

    def export(self, kid: str) -> dict[str, Any]:
        """One key as ``{"kid", "secret", "created"}`` (to import it elsewhere); raises ``KeyError``."""
        entry = self.data()["keys"][kid]
        return {"kid": kid, **entry}

    def add(self, kid: str, secret: str) -> None:
        """Add a key exported elsewhere (it verifies; it does not become active).

        Raises:
            ValueError: a malformed id or secret, or a different key under the same id.
        """
        if not KID.match(kid):
            raise ValueError(f"bad key id {kid[:64]!r}")
        try:
            raw = base64.urlsafe_b64decode(secret + "==")
        except (ValueError, TypeError):
            raise ValueError("the secret is not base64url") from None
        if len(raw) < 16:
            raise ValueError("the secret is shorter than 16 bytes")
        data = self.data()
        known = data["keys"].get(kid)
        if known is not None and known["secret"] != secret.rstrip("="):
            raise ValueError(f"a different key {kid} is already in the set")
        self.file.put({**data, "keys": {**data["keys"], kid: _entry(raw)}})
