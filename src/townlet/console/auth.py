"""Console credentials: signed tokens (JWT, HS256, with a key id), the key set, revocations, the issue log.

A token carries its principal (``sub``), role (``viewer`` or ``admin``), issue and expiry times and a
unique id (``jti``); its header names the signing key (``kid``). Three files hold the authority's state:

- the key set (``keys.json``, mode 0600): signing secrets by key id and which one signs new tokens;
- the revocation list (``revocations.json``): revoked token ids, and principals revoked before a time;
- the issue log (``issued.jsonl``): one line per token issued (never the token itself).

Key set and revocations are re-read whenever their files change, so ``townlet token revoke`` and key
rotation take effect in a running server without a restart. Every failure is ``E_UNAUTHENTICATED``.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import orjson

from townlet.console.errors import E_UNAUTHENTICATED, CommandError
from townlet.files import write_atomic

if TYPE_CHECKING:
    from jwt.types import Options

ROLES = ("viewer", "admin")
ALGORITHM = "HS256"
ISSUER = "townlet"
MAX_TOKEN_CHARS = 4096
_TTL = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PRINCIPAL = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}$")


def parse_ttl(text: str) -> int:
    """Seconds in a duration like ``90s``, ``30m``, ``1h`` or ``7d``."""
    match = _TTL.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"expected a duration like 30m, 1h or 7d, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for.

    Attributes:
        name: The principal (token ``sub``).
        role: ``viewer`` or ``admin`` (from the token only).
        jti: The token id.
        expires: Expiry, in Unix seconds.
    """

    name: str
    role: str
    jti: str
    expires: int

    @property
    def is_admin(self) -> bool:
        """Whether the token grants admin commands."""
        return self.role == "admin"


class _Watched:
    """A JSON file re-read whenever its modification time or size changes."""

    def __init__(self, path: Path, empty: dict[str, Any]) -> None:
        self.path = path
        self.empty = empty
        self.stamp: tuple[int, int, int] | None = None
        self.data: dict[str, Any] = orjson.loads(orjson.dumps(empty))

    def get(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self.stamp:
            self.stamp = stamp
            if stamp is None:
                self.data = orjson.loads(orjson.dumps(self.empty))
            else:
                self.data = orjson.loads(self.path.read_bytes())
        return self.data

    def put(self, data: dict[str, Any], mode: int = 0o600) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n", permissions=mode)
        self.stamp = None  # re-read (and re-stamp) on next use


class TokenAuthority:
    """Issues, verifies, revokes and lists console tokens; manages the signing keys.

    Args:
        keys_file: The key set (created with a fresh key on first issue).
        revocations_file: The revocation list.
        issued_file: The append-only issue log.
        leeway_s: Clock skew tolerated when checking expiry.
        max_ttl_s: Longest lifetime a token may be issued with.
    """

    def __init__(self, keys_file: str | Path, revocations_file: str | Path, issued_file: str | Path,
                 leeway_s: int = 30, max_ttl_s: int = 30 * 86400) -> None:
        self.keys = _Watched(Path(keys_file).expanduser(), {"active": None, "keys": {}})
        self.revocations = _Watched(Path(revocations_file).expanduser(), {"tokens": {}, "principals": {}})
        self.issued_file = Path(issued_file).expanduser()
        self.leeway_s = leeway_s
        self.max_ttl_s = max_ttl_s

    @classmethod
    def from_config(cls, console: Any) -> TokenAuthority:
        """Files from the ``console`` config section (empty names live in ``state_dir``)."""
        paths = console_paths(console)
        return cls(paths["keys"], paths["revocations"], paths["issued"], console.leeway_s,
                   parse_ttl(console.max_ttl))

    # -- keys ---------------------------------------------------------------------------------------

    def _secret(self, kid: str) -> bytes | None:
        entry = self.keys.get()["keys"].get(kid)
        if not isinstance(entry, dict) or "secret" not in entry:
            return None
        return base64.urlsafe_b64decode(entry["secret"] + "==")

    def rotate(self, retire_others: bool = False) -> str:
        """Make a fresh signing key active; old keys keep verifying their tokens unless retired."""
        data = self.keys.get()
        kid = f"k{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        keys = {} if retire_others else dict(data["keys"])
        keys[kid] = {
            "secret": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
            "created": int(time.time()),
        }
        self.keys.put({"active": kid, "keys": keys})
        return kid

    def retire(self, kid: str) -> None:
        """Remove a key: every token it signed stops verifying at once."""
        data = self.keys.get()
        if kid not in data["keys"]:
            raise KeyError(kid)
        if kid == data["active"]:
            raise ValueError("cannot retire the active key; rotate first")
        keys = {k: v for k, v in data["keys"].items() if k != kid}
        self.keys.put({"active": data["active"], "keys": keys})

    def key_ids(self) -> tuple[str | None, list[str]]:
        """The active key id and every key id in the set."""
        data = self.keys.get()
        return data["active"], sorted(data["keys"])

    # -- tokens -------------------------------------------------------------------------------------

    def issue(self, principal: str, role: str, ttl_s: int, now: float | None = None) -> tuple[str, dict[str, Any]]:
        """Sign a token; returns ``(token, claims)`` and records it in the issue log."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not _PRINCIPAL.match(principal):
            raise ValueError("principal must be 1-64 characters of letters, digits and _ . @ : -")
        if not 0 < ttl_s <= self.max_ttl_s:
            raise ValueError(f"ttl must be between 1 second and {self.max_ttl_s} seconds (console.max_ttl)")
        if self.keys.get()["active"] is None:
            self.rotate()
        kid = self.keys.get()["active"]
        secret = self._secret(kid)
        assert secret is not None
        iat = int(now if now is not None else time.time())
        claims = {"iss": ISSUER, "sub": principal, "role": role, "iat": iat, "exp": iat + ttl_s,
                  "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})
        self.issued_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.issued_file, "ab") as log:
            log.write(orjson.dumps({**claims, "kid": kid}) + b"\n")
        return token, claims

    def verify(self, token: Any) -> Principal:
        """Check a token's form, key, signature, expiry and revocation; the role comes only from it.

        Raises:
            CommandError: ``E_UNAUTHENTICATED`` with the reason.
        """
        if token is None or token == "":
            raise CommandError(E_UNAUTHENTICATED, "missing token")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise CommandError(E_UNAUTHENTICATED, "malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise CommandError(E_UNAUTHENTICATED, "malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise CommandError(E_UNAUTHENTICATED, "unsupported signing algorithm")
        kid = header.get("kid")
        secret = self._secret(kid) if isinstance(kid, str) else None
        if secret is None:
            raise CommandError(E_UNAUTHENTICATED, "unknown or retired signing key")
        options: Options = {"require": ["exp", "iat", "sub", "role", "jti"], "verify_iat": False}
        try:
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], leeway=self.leeway_s, issuer=ISSUER,
                                options=options)
        except jwt.ExpiredSignatureError:
            raise CommandError(E_UNAUTHENTICATED, "token expired") from None
        except jwt.InvalidSignatureError:
            raise CommandError(E_UNAUTHENTICATED, "bad signature") from None
        except jwt.InvalidTokenError as exc:
            raise CommandError(E_UNAUTHENTICATED, f"invalid token ({exc})") from None
        role, name, jti = claims.get("role"), claims.get("sub"), claims.get("jti")
        if role not in ROLES or not isinstance(name, str) or not isinstance(jti, str):
            raise CommandError(E_UNAUTHENTICATED, "invalid token claims")
        if self.revoked(jti, name, int(claims["iat"])):
            raise CommandError(E_UNAUTHENTICATED, "token revoked")
        return Principal(name, role, jti, int(claims["exp"]))

    def revoked(self, jti: str, principal: str, iat: int) -> bool:
        """Whether a token id, or every token its principal got up to a time, has been revoked."""
        data = self.revocations.get()
        if jti in data["tokens"]:
            return True
        entry = data["principals"].get(principal)
        return entry is not None and iat <= int(entry["before"])

    def revoke(self, jti: str | None = None, principal: str | None = None, reason: str = "") -> None:
        """Revoke one token (by id, or pass a whole token) or every token a principal holds now."""
        data = orjson.loads(orjson.dumps(self.revocations.get()))
        now = int(time.time())
        if jti is not None:
            if jti.count(".") == 2:  # a whole token: revoke its id
                jti = str(jwt.decode(jti, options={"verify_signature": False}).get("jti", jti))
            data["tokens"][jti] = {"revoked_at": now, "reason": reason}
        if principal is not None:
            data["principals"][principal] = {"before": now, "revoked_at": now, "reason": reason}
        if jti is None and principal is None:
            raise ValueError("give a token id or a principal")
        self.revocations.put(data, 0o644)

    def issued(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every token in the issue log with its status: ``active``, ``expired`` or ``revoked``."""
        now = time.time() if now is None else now
        if not self.issued_file.exists():
            return []
        out = []
        for line in self.issued_file.read_bytes().splitlines():
            if not line.strip():
                continue
            rec = orjson.loads(line)
            if self.revoked(rec["jti"], rec["sub"], int(rec["iat"])):
                status = "revoked"
            elif rec["exp"] + self.leeway_s < now:
                status = "expired"
            else:
                status = "active"
            out.append({**rec, "status": status})
        return out


def console_paths(console: Any) -> dict[str, Path]:
    """Resolved file paths of the ``console`` config section."""
    base = Path(os.path.expanduser(console.state_dir))

    def pick(value: str, default: str) -> Path:
        return Path(os.path.expanduser(value)) if value else base / default

    return {
        "keys": pick(console.keys_file, "keys.json"),
        "revocations": pick(console.revocations_file, "revocations.json"),
        "issued": pick(console.issued_file, "issued.jsonl"),
        "audit": pick(console.audit_file, "audit.jsonl"),
    }
