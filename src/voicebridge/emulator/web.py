"""The live transcript view: a read-only page at ``/ui/`` and the two small JSON endpoints it polls.

- ``GET /ui/`` the page; ``GET /ui/static/NAME`` its script and style sheet (files of ``emulator/static``).
- ``GET /ui/api/interactions`` every interaction (newest first, at most ``LIST_LIMIT``) with its message and
  note counts: one SQL query.
- ``GET /ui/api/interactions/{sys_id}`` the interaction and its messages in ``sequence`` order (Agent
  Workspace's order: begin offset, end offset, arrival): one SQL query.

No authentication, like the ``/__emulator/`` control endpoints: it is a developer tool for an emulator that
binds loopback by default, and it only reads. Anyone who can reach the emulator's port can read the stored
transcripts through it (the Table API needs basic auth). Message text is returned as stored; the page renders
it with ``textContent`` only, since transcripts are untrusted input. Nothing here logs content.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from voicebridge.emulator.store import Store

PREFIX = "/ui"
LIST_LIMIT = 200
_STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.(?:html|js|css)")
_CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}
JSON_TYPE = "application/json; charset=utf-8"
# The page loads only its own script and style sheet and talks only to this emulator.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_LIST_SQL = """
SELECT i.sys_id, i.number, i.state, i.user_id, i.caller_phone_number, i.client_session_id, i.assigned_to,
       i.opened_at, i.closed_at, i.recording_url,
       COUNT(m.id) AS message_count,
       COALESCE(SUM(m.is_internal), 0) AS note_count,
       COALESCE(MAX(m.id), 0) AS last_message
FROM interaction AS i
LEFT JOIN sys_cs_message AS m ON m.conversation = i.channel_metadata_document
GROUP BY i.sys_id
ORDER BY i.number DESC
LIMIT ?
"""

_DETAIL_SQL = """
SELECT i.sys_id, i.number, i.state, i.user_id, i.caller_phone_number, i.client_session_id, i.assigned_to,
       i.opened_at, i.closed_at, i.recording_url, i.channel_metadata_document AS conversation,
       m.sys_id AS m_sys_id, m.sequence, m.payload, m.participant, m.is_agent, m.sentiment,
       m.begin_offset_millis, m.end_offset_millis, m.is_internal, m.is_event, m.attributes
FROM interaction AS i
LEFT JOIN sys_cs_message AS m ON m.conversation = i.channel_metadata_document
WHERE i.sys_id = ?
ORDER BY m.sequence, m.id
"""

_INTERACTION_FIELDS = (
    "sys_id",
    "number",
    "state",
    "user_id",
    "caller_phone_number",
    "client_session_id",
    "assigned_to",
    "opened_at",
    "closed_at",
    "recording_url",
)


@dataclass
class WebReply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def matches(path: str) -> bool:
    """Whether ``path`` (no query string) belongs to the view."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def _read(store: Store, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
    # One query with joins (the Table API would cost two per list row).
    return store.read(sql, params)


def _json(status: int, payload: Any, if_none_match: str | None = None) -> WebReply:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {**_SECURITY_HEADERS, "ETag": etag}
    if status == 200 and if_none_match == etag:
        return WebReply(304, b"", JSON_TYPE, headers)
    return WebReply(status, body, JSON_TYPE, headers)


def _error(status: int, message: str) -> WebReply:
    return _json(status, {"error": message})


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _interaction(row: sqlite3.Row) -> dict[str, Any]:
    return {name: _text(row[name]) for name in _INTERACTION_FIELDS}


def _attributes(text: str | None) -> dict[str, str]:
    """``[{"key": k, "value": v}, ...]`` as a dict; anything else (not what the bridge sends) as ``{}``."""
    if not text:
        return {}
    try:
        items = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(items, list):
        return {}
    return {
        str(item["key"]): _text(item.get("value"))
        for item in items
        if isinstance(item, dict) and isinstance(item.get("key"), str)
    }


def list_interactions(store: Store) -> dict[str, Any]:
    rows = _read(store, _LIST_SQL, (LIST_LIMIT,))
    interactions = []
    for row in rows:
        item = _interaction(row)
        item.update(message_count=int(row["message_count"]), note_count=int(row["note_count"] or 0))
        interactions.append(item)
    # A cheap change marker: any new interaction, message, state change or recording changes it.
    marker = "|".join(f"{r['sys_id']}:{r['state']}:{r['last_message']}:{r['message_count']}" for r in rows)
    version = hashlib.blake2b(marker.encode(), digest_size=8).hexdigest()
    return {"interactions": interactions, "version": version}


def interaction_detail(store: Store, sys_id: str) -> dict[str, Any] | None:
    rows = _read(store, _DETAIL_SQL, (sys_id,))
    if not rows:
        return None
    messages = [
        {
            "sys_id": row["m_sys_id"],
            "sequence": int(row["sequence"]),
            "participant": _text(row["participant"]),
            "is_agent": bool(row["is_agent"]),
            "is_internal": bool(row["is_internal"]),
            "is_event": bool(row["is_event"]),
            "sentiment": _text(row["sentiment"]),
            "begin_offset_millis": int(row["begin_offset_millis"]),
            "end_offset_millis": int(row["end_offset_millis"]),
            "content": _text(row["payload"]),
            "attributes": _attributes(row["attributes"]),
        }
        for row in rows
        if row["m_sys_id"] is not None
    ]
    interaction = _interaction(rows[0])
    interaction["conversation"] = _text(rows[0]["conversation"])
    return {"interaction": interaction, "messages": messages}


def _static(name: str) -> WebReply:
    if not _STATIC_NAME.fullmatch(name):
        return _error(404, "No such file")
    resource = resources.files("voicebridge.emulator").joinpath("static", name)
    if not resource.is_file():
        return _error(404, "No such file")
    content_type = _CONTENT_TYPES[name.rsplit(".", 1)[1]]
    return WebReply(200, resource.read_bytes(), content_type, dict(_SECURITY_HEADERS))


def handle(store: Store, method: str, path: str, headers: dict[str, str]) -> WebReply:
    """Answer one request under ``/ui``; ``headers`` have lower-case names."""
    if method not in ("GET", "HEAD"):
        reply = _error(405, "The live transcript view is read-only")
        reply.headers["Allow"] = "GET, HEAD"
        return reply
    if path == PREFIX:
        return WebReply(301, b"", "text/plain; charset=utf-8", {"Location": PREFIX + "/"})
    rest = path[len(PREFIX) + 1 :]
    if rest in ("", "index.html"):
        return _static("index.html")
    if rest.startswith("static/"):
        return _static(rest[len("static/") :])
    if_none_match = headers.get("if-none-match")
    if rest == "api/interactions":
        return _json(200, list_interactions(store), if_none_match)
    if rest.startswith("api/interactions/"):
        sys_id = rest[len("api/interactions/") :]
        detail = interaction_detail(store, sys_id) if sys_id and "/" not in sys_id else None
        if detail is None:
            return _error(404, "No such interaction")
        return _json(200, detail, if_none_match)
    return _error(404, "No such page")
