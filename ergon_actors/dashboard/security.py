"""The dashboard's guards: where it may listen, the access token, its session cookie and the
CSRF token every action form carries."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from ..errors import ConfigError

__all__ = ["Guard", "check_bind", "is_loopback", "new_token", "MIN_TOKEN_LENGTH", "COOKIE"]

MIN_TOKEN_LENGTH = 16
COOKIE = "ergon_dashboard"


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine: localhost or an address in 127.0.0.0/8 or ::1."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token.

    Raises:
        ConfigError: `host` is not a loopback address and no token was given, or the token is too short.
    """
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"the dashboard token must have at least {MIN_TOKEN_LENGTH} characters, "
                          f"got {len(token)}")
    if token is None and not is_loopback(host):
        raise ConfigError(f"the dashboard listens on {host}, beyond this machine: give it a token "
                          "(--token or ERGON_DASHBOARD_TOKEN), or listen on 127.0.0.1")


def new_token() -> str:
    """A random token for a dashboard started without one."""
    return secrets.token_urlsafe(24)


class Guard:
    """Checks a request's credentials against the token: the token itself (a link's ?token= or an
    Authorization: Bearer header), the session cookie derived from it, and the CSRF token."""

    def __init__(self, token: str) -> None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"the dashboard token must have at least {MIN_TOKEN_LENGTH} characters, "
                              f"got {len(token)}")
        self._token = token
        self.session = self._derive("session")
        self.csrf = self._derive("csrf")

    def _derive(self, purpose: str) -> str:
        return hmac.new(self._token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self._token.encode())

    def session_ok(self, cookie: str | None) -> bool:
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode())

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())

    def bearer_ok(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())
