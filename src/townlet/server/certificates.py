"""Start-up checks of the live server's TLS certificate: readable PEM files, a key that matches, valid dates.

``townlet serve --tls-cert F --tls-key F`` runs these before it binds anything, so a bad pair stops the
command with one line instead of a traceback from deep inside the TLS library. An expired or not yet valid
certificate stops it too, unless ``server.tls_allow_invalid_dates`` is set, in which case it starts with a
loud warning (browsers will refuse the page anyway; a test rig may not care).
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

SOON_S = 14 * 86400  # a certificate expiring sooner than this gets a warning at start


class CertificateError(ValueError):
    """A certificate or key the server cannot serve with; the message is one line."""


def _dates(cert: Path) -> tuple[float, float] | None:
    """The validity dates (notBefore, notAfter) of the first certificate in a PEM file, or None."""
    try:
        decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]  # stable since Python 2.7
        return ssl.cert_time_to_seconds(decoded["notBefore"]), ssl.cert_time_to_seconds(decoded["notAfter"])
    except (AttributeError, KeyError, ValueError, ssl.SSLError, OSError):
        return None


def check_certificate(
    cert: str | Path, key: str | Path, allow_invalid_dates: bool = False, now: float | None = None
) -> list[str]:
    """Check a certificate and its key; returns warnings (expiring soon, dates not checked).

    Raises:
        CertificateError: a missing or unreadable file, not PEM, a key that does not match the certificate,
            or (unless ``allow_invalid_dates``) a certificate that has expired or is not valid yet.
    """
    cert, key = Path(cert).expanduser(), Path(key).expanduser()
    for path in (cert, key):
        if not path.is_file():
            raise CertificateError(f"TLS file not found: {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        if "KEY_VALUES_MISMATCH" in reason or "key values mismatch" in str(exc):
            raise CertificateError(f"the TLS key {key} does not match the certificate {cert}") from None
        raise CertificateError(f"cannot use {cert} with {key}: {reason} (both must be PEM files)") from None
    except OSError as exc:
        raise CertificateError(f"cannot read {cert} or {key}: {exc.strerror or exc}") from None
    dates = _dates(cert)
    if dates is None:
        return [f"could not read the validity dates of {cert}; not checked"]
    not_before, not_after = dates
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(not_after if now > not_after else not_before))
    problem = None
    if now > not_after:
        problem = f"the TLS certificate {cert} expired on {stamp}"
    elif now < not_before:
        problem = f"the TLS certificate {cert} is not valid before {stamp}"
    if problem is not None:
        if not allow_invalid_dates:
            raise CertificateError(
                f"{problem}; renew it (or set server.tls_allow_invalid_dates=true to serve it anyway)"
            )
        return [f"{problem}; serving it anyway (server.tls_allow_invalid_dates) - browsers will refuse it"]
    if not_after - now < SOON_S:
        days = (not_after - now) / 86400
        return [f"the TLS certificate {cert} expires in {days:.1f} days; renew it"]
    return []
