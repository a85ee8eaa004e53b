"""Console credentials: signed tokens (JWT, HS256, with a key id), the key set, revocations, the issue log.

A token carries its principal (``sub``), role (``viewer`` or ``admin``), issue and expiry times and a
unique id (``jti``); its header names the signing key (``kid``). Three files hold the authority's state:

- the key set (``keys.json``, mode 0600): signing secrets by key id and which one signs new tokens;
- the revocation list (``revocations.json``): revoked token ids, and principals revoked before a time;
- the issue log (``issued.jsonl``): one line per token issued (never the token itself).

Key set and revocations are re-read whenever their files change, so ``townlet token revoke`` and key
rotation take effect in a running server without a restart. Every failure is ``E_UNAUTHENTICATED``.

Revocation fails closed: the list is created with the first key (with a ``revocations.json.required`` marker
beside it), and from then on a missing or corrupt
list makes every token fail ("revocation list unavailable") and logs a ``console.credentials_unavailable``
alert until the file is restored; it is never used stale. ``townlet serve`` refuses to start without it.
Claims are type-checked (``iat``, ``exp`` and any ``nbf`` finite numbers; ``iat`` not in the future beyond
the leeway), so no token escapes ``revoke --principal`` with a far-future ``iat``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import orjson

from townlet.console.errors import E_UNAUTHENTICATED, CommandError
from townlet.keys import KeySet, StateFileError, WatchedJson
from townlet.logs import log_event

if TYPE_CHECKING:
    from jwt.types import Options

log = logging.getLogger("townlet.console")
ROLES = ("viewer", "admin")
ALGORITHM = "HS256"
ISSUER = "townlet"
MAX_TOKEN_CHARS = 4096
REQUIRED_SUFFIX = ".required"  # a marker beside the revocation list: it existed, so it must not go missing
_TTL = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PRINCIPAL = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}$")
_EMPTY_REVOCATIONS: dict[str, Any] = {"tokens": {}, "principals": {}}


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


def _check_revocations(data: Any) -> None:
    if not isinstance(data.get("tokens"), dict) or not isinstance(data.get("principals"), dict):
        raise ValueError("expected tokens and principals objects")
    for name, entry in data["principals"].items():
        before = entry.get("before") if isinstance(entry, dict) else None
        if not _finite(before):
            raise ValueError(f"principal {str(name)[:64]!r} has no numeric 'before'")


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _listed(revocations: dict[str, Any], jti: str, principal: str, iat: float) -> bool:
    if jti in revocations["tokens"]:
        return True
    entry = revocations["principals"].get(principal)
    return entry is not None and iat <= entry["before"]


class RevocationsUnavailable(Exception):
    """The revocation list is missing or corrupt where it must exist (``serve`` will not start)."""


class TokenAuthority:
    """Issues, verifies, revokes and lists console tokens; manages the signing keys.

    Args:
        keys_file: The key set (created with a fresh key, and an empty revocation list, on first issue).
        revocations_file: The revocation list.
        issued_file: The append-only issue log.
        leeway_s: Clock skew tolerated when checking expiry and issue times.
        max_ttl_s: Longest lifetime a token may be issued with.
    """

    def __init__(
        self,
        keys_file: str | Path,
        revocations_file: str | Path,
        issued_file: str | Path,
        leeway_s: int = 30,
        max_ttl_s: int = 30 * 86400,
    ) -> None:
        self.keys = KeySet(keys_file)
        self.revocations = WatchedJson(Path(revocations_file).expanduser(), _check_revocations)
        self.issued_file = Path(issued_file).expanduser()
        self.leeway_s = leeway_s
        self.max_ttl_s = max_ttl_s
        self.alert: str | None = None  # what is wrong with the key set or revocation list, while it lasts

    @classmethod
    def from_config(cls, console: Any) -> TokenAuthority:
        """Files from the ``console`` config section (empty names live in ``state_dir``)."""
        paths = console_paths(console)
        return cls(paths["keys"], paths["revocations"], paths["issued"], console.leeway_s, parse_ttl(console.max_ttl))

    # -- keys ---------------------------------------------------------------------------------------

    def rotate(self, retire_others: bool = False) -> str:
        """Make a fresh signing key active; old keys keep verifying their tokens unless retired."""
        kid = self.keys.rotate(retire_others)
        self.ensure_revocation_list()
        return kid

    def retire(self, kid: str) -> None:
        """Remove a key: every token it signed stops verifying at once."""
        self.keys.retire(kid)

    def key_ids(self) -> tuple[str | None, list[str]]:
        """The active key id and every key id in the set."""
        return self.keys.ids()

    def ensure_revocation_list(self) -> None:
        """Create an empty revocation list beside a key set that never had one (a fresh or older install).

        Raises:
            RevocationsUnavailable: the list is corrupt, or missing although it existed before (restore it).
        """
        try:
            self.revocations.get()
            return
        except StateFileError as exc:
            if not exc.missing:
                raise RevocationsUnavailable(f"the revocation list {exc}; fix or restore it") from None
        if not self.keys.data()["keys"]:
            return
        marker = self.revocations.path.with_name(self.revocations.path.name + REQUIRED_SUFFIX)
        if marker.exists():
            raise RevocationsUnavailable(
                f"the revocation list {self.revocations.path} is missing although it existed before; restore it "
                "from a backup (an empty list would re-enable every revoked token: write "
                '{"tokens": {}, "principals": {}} to it only if you mean that)'
            )
        self.revocations.put(_EMPTY_REVOCATIONS, 0o644, exclusive=True)
        marker.write_bytes(b"")  # the key set may be a read-only secret: the marker lives beside the list

    # -- tokens -------------------------------------------------------------------------------------

    def issue(self, principal: str, role: str, ttl_s: int, now: float | None = None) -> tuple[str, dict[str, Any]]:
        """Sign a token; returns ``(token, claims)`` and records it in the issue log."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not _PRINCIPAL.match(principal):
            raise ValueError("principal must be 1-64 characters of letters, digits and _ . @ : -")
        if not 0 < ttl_s <= self.max_ttl_s:
            raise ValueError(f"ttl must be between 1 second and {self.max_ttl_s} seconds (console.max_ttl)")
        active = self.keys.active(create=True)
        assert active is not None
        kid, secret = active
        self.ensure_revocation_list()
        iat = int(now if now is not None else time.time())
        claims = {
            "iss": ISSUER,
            "sub": principal,
            "role": role,
            "iat": iat,
            "exp": iat + ttl_s,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})
        self.issued_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.issued_file, "ab") as issued:
            issued.write(orjson.dumps({**claims, "kid": kid}) + b"\n")
        return token, claims

    def verify(self, token: Any, now: float | None = None) -> Principal:
        """Check a token's form, key, signature, claims, times and revocation; the role comes only from it.

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
        try:
            secret = self.keys.secret(kid) if isinstance(kid, str) else None
        except StateFileError as exc:
            self._alert(f"the signing key set {exc}")
            raise CommandError(E_UNAUTHENTICATED, "signing keys unavailable; no token is accepted") from None
        if secret is None:
            raise CommandError(E_UNAUTHENTICATED, "unknown or retired signing key")
        # times are checked below, by type first: a signed but malformed claim must be refused, never crash
        options: Options = {
            "require": ["exp", "iat", "sub", "role", "jti"],
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
        }
        try:
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options=options)
        except jwt.InvalidSignatureError:
            raise CommandError(E_UNAUTHENTICATED, "bad signature") from None
        except jwt.InvalidTokenError as exc:
            raise CommandError(E_UNAUTHENTICATED, f"invalid token ({str(exc)[:120]})") from None
        name, role, jti = self._claims(claims, time.time() if now is None else now)
        if self.revoked(jti, name, claims["iat"]):
            raise CommandError(E_UNAUTHENTICATED, "token revoked")
        return Principal(name, role, jti, int(claims["exp"]))

    def _claims(self, claims: dict[str, Any], now: float) -> tuple[str, str, str]:
        role, name, jti = claims.get("role"), claims.get("sub"), claims.get("jti")
        if role not in ROLES or not isinstance(name, str) or not _PRINCIPAL.match(name) or not isinstance(jti, str):
            raise CommandError(E_UNAUTHENTICATED, "invalid token claims")
        times = {k: claims[k] for k in ("iat", "exp", "nbf") if k in claims}
        if not all(_finite(v) for v in times.values()) or len(jti) > 128:
            raise CommandError(E_UNAUTHENTICATED, "invalid token claims (iat, exp and nbf must be numbers)")
        if times["exp"] + self.leeway_s < now:
            raise CommandError(E_UNAUTHENTICATED, "token expired")
        if times["iat"] > now + self.leeway_s:
            raise CommandError(E_UNAUTHENTICATED, "token issued in the future")
        if times.get("nbf", now) > now + self.leeway_s:
            raise CommandError(E_UNAUTHENTICATED, "token not yet valid")
        return name, role, jti

    def revoked(self, jti: str, principal: str, iat: float) -> bool:
        """Whether a token id, or every token its principal got up to a time, has been revoked.

        Raises:
            CommandError: ``E_UNAUTHENTICATED`` when the revocation list is missing or corrupt (fail closed).
        """
        try:
            data = self.revocations.get()
        except StateFileError as exc:
            self._alert(f"the revocation list {exc}")
            raise CommandError(
                E_UNAUTHENTICATED, "revocation list unavailable; no token is accepted until it is restored"
            ) from None
        if self.alert is not None:
            log_event(log, "console.credentials_restored", None, problem=self.alert)
            self.alert = None
        return _listed(data, jti, principal, iat)

    def _alert(self, problem: str) -> None:
        if problem != self.alert:  # once per new problem, not once per request
            self.alert = problem
            log_event(log, "console.credentials_unavailable", None, level=logging.ERROR, problem=problem)

    def revoke(self, jti: str | None = None, principal: str | None = None, reason: str = "") -> None:
        """Revoke one token (by id, or pass a whole token) or every token a principal holds now.

        Raises:
            ValueError: nothing to revoke, or a garbled token.
            RevocationsUnavailable: the list is missing or corrupt (restore it first).
        """
        if jti is None and principal is None:
            raise ValueError("give a token id or a principal")
        self.ensure_revocation_list()
        try:
            data = orjson.loads(orjson.dumps(self.revocations.get()))
        except StateFileError as exc:
            raise RevocationsUnavailable(f"the revocation list {exc}") from None
        now = int(time.time())
        if jti is not None:
            if jti.count(".") == 2:  # a whole token: revoke its id
                jti = str(jwt.decode(jti, options={"verify_signature": False}).get("jti", jti))
            data["tokens"][jti] = {"revoked_at": now, "reason": reason}
        if principal is not None:
            data["principals"][principal] = {"before": now, "revoked_at": now, "reason": reason}
        self.revocations.put(data, 0o644)

    def issued(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every token in the issue log with its status: ``active``, ``expired``, ``revoked`` or ``unknown``.

        ``unknown``: the revocation list cannot be read, so nothing can be vouched for.
        """
        now = time.time() if now is None else now
        if not self.issued_file.exists():
            return []
        try:
            data: dict[str, Any] | None = self.revocations.get()
        except StateFileError:
            data = None
        out = []
        for line in self.issued_file.read_bytes().splitlines():
            if not line.strip():
                continue
            rec = orjson.loads(line)
            if data is None:
                status = "unknown"
            elif _listed(data, rec["jti"], rec["sub"], rec["iat"]):
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
