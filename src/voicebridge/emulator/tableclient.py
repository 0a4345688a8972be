"""A tiny Table API client: read back what the emulator (or a real instance) stored for an interaction."""

from __future__ import annotations

from typing import Any

import requests

PAGE = 1000


def _get(session: requests.Session, url: str, params: dict[str, str], timeout: float) -> tuple[Any, int]:
    response = session.get(url, params=params, headers={"Accept": "application/json"}, timeout=timeout)
    response.raise_for_status()
    return response.json()["result"], int(response.headers.get("X-Total-Count", "0"))


def read_transcript(
    url: str, auth: Any, interaction_id: str, *, timeout: float = 10.0, session: requests.Session | None = None
) -> list[dict[str, str]]:
    """The ``sys_cs_message`` rows of an interaction's conversation in ``sequence`` order (all values strings).

    ``url`` is the instance base URL (``http://127.0.0.1:8080``); ``auth`` anything requests accepts
    (``("admin", "admin")`` or a bearer ``AuthBase``). An interaction without a conversation reads as ``[]``.
    """
    own = session is None
    http = session or requests.Session()
    http.auth = auth
    try:
        base = url.rstrip("/") + "/api/now/table"
        conversations, _ = _get(
            http,
            f"{base}/sys_cs_conversation",
            {"sysparm_query": f"interaction={interaction_id}", "sysparm_fields": "sys_id"},
            timeout,
        )
        if not conversations:
            return []
        conversation = conversations[0]["sys_id"]
        messages: list[dict[str, str]] = []
        while True:
            params = {
                "sysparm_query": f"conversation={conversation}^ORDERBYsequence",
                "sysparm_limit": str(PAGE),
                "sysparm_offset": str(len(messages)),
            }
            page, total = _get(http, f"{base}/sys_cs_message", params, timeout)
            messages.extend(page)
            if not page or len(messages) >= total:
                return messages
    finally:
        if own:
            http.close()
