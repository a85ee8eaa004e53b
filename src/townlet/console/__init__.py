"""The console: typed commands with stable error codes, token auth with roles, an audit log, idempotency.

``ConsoleService.submit(token, payload)`` is the one entry point (the live server mounts it on HTTP);
commands are applied at the next tick boundary in arrival order.
"""

from townlet.console.auth import Principal, TokenAuthority
from townlet.console.catalog import REGISTRY
from townlet.console.errors import ERROR_CODES, CommandError
from townlet.console.service import ConsoleService, Result

__all__ = ["ERROR_CODES", "REGISTRY", "CommandError", "ConsoleService", "Principal", "Result", "TokenAuthority"]
