"""ServiceNow credentials from a Secrets Manager secret (never from plain environment variables).

Secret JSON: ``{"username": "...", "password": "..."}`` (basic auth) or ``{"client_id": "...",
"client_secret": "..."}`` (OAuth client credentials; with ``username``/``password`` too, the password grant).
Fetched through Powertools Parameters with a cache, re-fetched on demand after a 401 (rotation).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from bridge.errors import ConfigurationError, RetryableError

SECRET_MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    client_id: str = ""
    client_secret: str = ""

    @property
    def oauth(self) -> bool:
        return bool(self.client_id)

    def __repr__(self) -> str:  # never print secrets, even in a traceback
        return f"Credentials(oauth={self.oauth}, username={'set' if self.username else 'unset'})"


def parse_secret(text: str, secret_id: str = "the secret") -> Credentials:
    """Validate the secret's JSON; the error names the missing keys, never a value."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{secret_id} is not a JSON object (SERVICENOW_SECRET_ARN)") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{secret_id} is not a JSON object (SERVICENOW_SECRET_ARN)")
    values = {str(key).lower(): str(value) for key, value in data.items() if isinstance(value, str | int)}
    credentials = Credentials(
        username=values.get("username", ""),
        password=values.get("password", ""),
        client_id=values.get("client_id", ""),
        client_secret=values.get("client_secret", ""),
    )
    if credentials.client_id and not credentials.client_secret:
        raise ConfigurationError(f"{secret_id} has client_id but no client_secret")
    if not credentials.oauth and not (credentials.username and credentials.password):
        raise ConfigurationError(
            f"{secret_id} must hold username and password (basic auth) or client_id and client_secret (OAuth)"
        )
    return credentials


def _powertools_fetch(secret_id: str, force: bool) -> str:
    from aws_lambda_powertools.utilities import parameters  # lazy: only when a secret is first needed
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        value = parameters.get_secret(secret_id, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force)
    except parameters.exceptions.GetParameterError as exc:
        # Powertools re-raises without ``from``: the driver's error is the implicit context, not the cause.
        cause = exc.__cause__ or exc.__context__
        code = cause.response.get("Error", {}).get("Code", "") if isinstance(cause, ClientError) else ""
        if code in {"ThrottlingException", "InternalServiceError"} or isinstance(cause, BotoCoreError):
            raise RetryableError(
                f"Secrets Manager unavailable for {secret_id}: {code or type(cause).__name__}"
            ) from exc
        raise ConfigurationError(
            f"cannot read the ServiceNow secret {secret_id} (SERVICENOW_SECRET_ARN): {code or 'unknown error'}"
        ) from exc
    return value if isinstance(value, str) else value.decode("utf-8")


class SecretCredentials:
    """Credentials provider: ``get()`` uses the cache, ``get(force=True)`` re-reads the secret."""

    def __init__(self, secret_id: str, fetch: Callable[[str, bool], str] = _powertools_fetch) -> None:
        self.secret_id = secret_id
        self._fetch = fetch

    def get(self, force: bool = False) -> Credentials:
        return parse_secret(self._fetch(self.secret_id, force), self.secret_id)
