"""TLS contexts for telemetry: verification and hostname checks on by default, optional client certificates."""

from __future__ import annotations

import ssl

from townlet.config.models import is_loopback_host

__all__ = ["client_context", "is_loopback_host", "server_context"]


def client_context(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client context that verifies the server certificate and its host name.

    Args:
        ca_file: CA bundle that signed the server certificate (default: the system's trusted CAs).
        cert_file: Our client certificate (PEM), for servers that require one.
        key_file: The client certificate's private key (PEM).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def server_context(cert_file: str, key_file: str | None = None, ca_file: str | None = None) -> ssl.SSLContext:
    """A server context with our certificate; with ``ca_file``, clients must present a certificate it signed."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if ca_file:
        ctx.load_verify_locations(ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
