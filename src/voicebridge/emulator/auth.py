"""Basic auth and ServiceNow-style OAuth 2.0 (``POST /oauth_token.do``) with expiring bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from voicebridge.emulator.errors import ApiError

REFRESH_TOKEN_TTL = 100 * 24 * 3600  # ServiceNow's default refresh token lifespan
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Service-now"'}


def _unauthenticated(detail: str) -> ApiError:
    return ApiError(401, "User Not Authenticated", detail, headers=BASIC_CHALLENGE)


def _equal(left: str, right: str) -> bool:
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def decode_basic(header: str) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` -> (user, password), or None when malformed."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class OAuthError(Exception):
    """An OAuth failure, answered in OAuth's own shape ``{"error", "error_description"}``."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.payload = {"error": error, "error_description": description}


class Authenticator:
    """Checks API credentials and issues/refreshes bearer tokens for the one configured OAuth client."""

    def __init__(
        self,
        *,
        user: str,
        password: str,
        client_id: str,
        client_secret: str,
        token_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._user, self._password = user, password
        self._client_id, self._client_secret = client_id, client_secret
        self._token_ttl = token_ttl
        self._clock = clock
        self._lock = threading.Lock()
        # token -> (expiry in clock time, the user it acts as). A client_credentials token acts as the OAuth
        # application user, which here is the one configured user: rate limits then count both ways of signing in.
        self._access: dict[str, tuple[float, str]] = {}
        self._refresh: dict[str, tuple[float, str]] = {}

    def check(self, header: str | None) -> str:
        """The user the Authorization header authenticates (basic or bearer); a 401 ``ApiError`` otherwise."""
        if header is None or not header.strip():
            raise _unauthenticated("Required to provide Auth information")
        scheme = header.strip().split(" ", 1)[0].lower()
        if scheme == "bearer":
            token = header.strip()[len("bearer") :].strip()
            with self._lock:
                grant = self._access.get(token)
                if grant is not None and grant[0] <= self._clock():
                    del self._access[token]
                    grant = None
            if grant is None:
                raise _unauthenticated("Invalid or expired access token")
            return grant[1]
        credentials = decode_basic(header)
        if credentials is None:
            raise _unauthenticated("Required to provide Auth information")
        if not (_equal(credentials[0], self._user) and _equal(credentials[1], self._password)):
            raise _unauthenticated("Invalid user name or password")
        return credentials[0]

    def _issue(self, user: str, refresh_token: str | None = None) -> dict[str, Any]:
        access = secrets.token_urlsafe(48)
        now = self._clock()
        with self._lock:
            self._access = {token: grant for token, grant in self._access.items() if grant[0] > now}
            self._access[access] = (now + self._token_ttl, user)
            if refresh_token is None:
                refresh_token = secrets.token_urlsafe(48)
                self._refresh[refresh_token] = (now + REFRESH_TOKEN_TTL, user)
        return {
            "access_token": access,
            "refresh_token": refresh_token,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": int(self._token_ttl) if float(self._token_ttl).is_integer() else self._token_ttl,
        }

    def grant(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """Handle a token request (form fields); the client may authenticate in the form or with basic auth."""
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if client_id is None and authorization:
            basic = decode_basic(authorization)
            if basic:
                client_id, client_secret = basic
        if not (
            client_id is not None
            and client_secret is not None
            and _equal(client_id, self._client_id)
            and _equal(client_secret, self._client_secret)
        ):
            raise OAuthError(401, "access_denied", "Invalid client credentials")
        grant_type = form.get("grant_type", "")
        if grant_type == "client_credentials":
            return self._issue(self._user)
        if grant_type == "password":
            user, password = form.get("username", ""), form.get("password", "")
            if not (_equal(user, self._user) and _equal(password, self._password)):
                raise OAuthError(401, "access_denied", "Invalid user name or password")
            return self._issue(user)
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            with self._lock:
                refresh = self._refresh.get(token)
            if refresh is None or refresh[0] <= self._clock():
                raise OAuthError(401, "access_denied", "Invalid or expired refresh token")
            return self._issue(refresh[1], refresh_token=token)
        if not grant_type:
            raise OAuthError(400, "invalid_request", "Missing grant_type")
        raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}")
