"""SQLite storage for the three tables the Voice Interaction API writes, and Table API reads.

One connection guarded by one lock (an in-memory database is per connection, and the write rate of a
test emulator does not need more). Every API call runs in ONE transaction after its body was validated,
so a rejected request stores nothing.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from voicebridge.emulator import tableapi
from voicebridge.emulator.errors import NO_RECORD, ApiError
from voicebridge.emulator.validation import Message, NewInteraction, StateChange, Transcript

_SCHEMA = """
CREATE TABLE IF NOT EXISTS interaction (
    sys_id TEXT PRIMARY KEY,
    number TEXT NOT NULL,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    user_id TEXT,
    client_session_id TEXT,
    caller_phone_number TEXT,
    assigned_to TEXT,
    inbound_id TEXT,
    recording_url TEXT,
    conversation_started TEXT,
    channel_metadata_table TEXT,
    channel_metadata_document TEXT,
    opened_at TEXT,
    closed_at TEXT,
    sys_created_on TEXT,
    transcript_processed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS interaction_session ON interaction(client_session_id);
CREATE TABLE IF NOT EXISTS sys_cs_conversation (
    sys_id TEXT PRIMARY KEY,
    interaction TEXT NOT NULL UNIQUE REFERENCES interaction(sys_id),
    state TEXT NOT NULL,
    sys_created_on TEXT
);
CREATE TABLE IF NOT EXISTS sys_cs_message (
    id INTEGER PRIMARY KEY,  -- arrival order
    sys_id TEXT NOT NULL UNIQUE,
    conversation TEXT NOT NULL REFERENCES sys_cs_conversation(sys_id),
    sequence INTEGER NOT NULL,
    payload TEXT NOT NULL,
    participant TEXT NOT NULL,
    is_agent INTEGER NOT NULL,
    sentiment TEXT,
    begin_offset_millis INTEGER NOT NULL,
    end_offset_millis INTEGER NOT NULL,
    source_message_id TEXT,
    is_internal INTEGER NOT NULL,
    is_event INTEGER NOT NULL,
    attributes TEXT,
    loudness_score TEXT,
    sys_created_on TEXT
);
CREATE INDEX IF NOT EXISTS message_order
    ON sys_cs_message(conversation, begin_offset_millis, end_offset_millis, id);
"""

_RENUMBER = """
WITH ranked AS (
    SELECT id, ROW_NUMBER() OVER (ORDER BY begin_offset_millis, end_offset_millis, id) AS position
    FROM sys_cs_message WHERE conversation = ?
)
UPDATE sys_cs_message SET sequence = ranked.position
FROM ranked WHERE sys_cs_message.id = ranked.id AND sys_cs_message.sequence != ranked.position
"""

NUMBER_PREFIX = "IMS"
FIRST_NUMBER = 10001
CLOSED = "closed_complete"


def now_text() -> str:
    """ServiceNow's date-time format, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def new_sys_id() -> str:
    return uuid.uuid4().hex


def _closed_error(interaction_id: str) -> ApiError:
    return ApiError(
        400,
        f"ERROR: Interaction {interaction_id} is closed; no more messages can be saved",
        "The interaction state is closed_complete",
        script_style=True,
    )


class Store:
    """The emulator's database. Thread-safe; ``path=None`` keeps it in memory."""

    def __init__(self, path: str | None = None) -> None:
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        if path:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ---- writes (the Voice Interaction API) ----

    def create_interaction(self, new: NewInteraction, *, sys_id: str | None = None) -> str:
        """Insert an ``interaction`` (type phone, state new, next IMS number); ``sys_id`` is for tests."""
        sys_id = sys_id or new_sys_id()
        now = now_text()
        with self._transaction() as conn:
            row = conn.execute("SELECT MAX(CAST(substr(number, 4) AS INTEGER)) FROM interaction").fetchone()
            number = max(FIRST_NUMBER, (row[0] or 0) + 1)
            conn.execute(
                "INSERT INTO interaction (sys_id, number, type, state, user_id, client_session_id,"
                " caller_phone_number, assigned_to, inbound_id, channel_metadata_table, opened_at, sys_created_on)"
                " VALUES (?, ?, 'phone', 'new', ?, ?, ?, ?, ?, 'sys_cs_conversation', ?, ?)",
                (
                    sys_id,
                    f"{NUMBER_PREFIX}{number:07d}",
                    new.user_id,
                    new.client_session_id,
                    new.caller_phone_number,
                    new.agent_id,
                    new.inbound_id,
                    now,
                    now,
                ),
            )
        return sys_id

    def _interaction(self, conn: sqlite3.Connection, interaction_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM interaction WHERE sys_id = ?", (interaction_id,)).fetchone()
        if row is None:
            raise ApiError(404, NO_RECORD, f"No interaction with sys_id {interaction_id}")
        return row

    def _ensure_conversation(self, conn: sqlite3.Connection, interaction: sqlite3.Row) -> str:
        existing = interaction["channel_metadata_document"]
        if existing:
            return str(existing)
        conversation_id = new_sys_id()
        now = now_text()
        conn.execute(
            "INSERT INTO sys_cs_conversation (sys_id, interaction, state, sys_created_on) VALUES (?, ?, 'open', ?)",
            (conversation_id, interaction["sys_id"], now),
        )
        conn.execute(
            "UPDATE interaction SET channel_metadata_document = ?, state = 'work_in_progress',"
            " conversation_started = COALESCE(conversation_started, ?) WHERE sys_id = ?",
            (conversation_id, now, interaction["sys_id"]),
        )
        return conversation_id

    def create_conversation(self, interaction_id: str, new: NewInteraction) -> str:
        """Create the interaction's conversation, or return the existing one unchanged (idempotent)."""
        with self._transaction() as conn:
            interaction = self._interaction(conn, interaction_id)
            if interaction["channel_metadata_document"]:
                return str(interaction["channel_metadata_document"])
            if interaction["state"] == CLOSED:
                raise _closed_error(interaction_id)
            conversation_id = self._ensure_conversation(conn, interaction)
            # the body's fields fill in what the interaction does not have yet
            conn.execute(
                "UPDATE interaction SET user_id = COALESCE(user_id, ?), assigned_to = COALESCE(?, assigned_to),"
                " caller_phone_number = COALESCE(caller_phone_number, ?),"
                " client_session_id = COALESCE(client_session_id, ?), inbound_id = COALESCE(inbound_id, ?)"
                " WHERE sys_id = ?",
                (
                    new.user_id,
                    new.agent_id,
                    new.caller_phone_number,
                    new.client_session_id,
                    new.inbound_id,
                    interaction_id,
                ),
            )
            return conversation_id

    def _insert_messages(self, conn: sqlite3.Connection, conversation_id: str, messages: Sequence[Message]) -> None:
        if not messages:
            return
        count = conn.execute("SELECT COUNT(*) FROM sys_cs_message WHERE conversation = ?", (conversation_id,))
        existing = int(count.fetchone()[0])
        last = conn.execute(
            "SELECT begin_offset_millis, end_offset_millis FROM sys_cs_message WHERE conversation = ?"
            " ORDER BY begin_offset_millis DESC, end_offset_millis DESC, id DESC LIMIT 1",
            (conversation_id,),
        ).fetchone()
        order = sorted(
            range(len(messages)), key=lambda i: (messages[i].begin_offset_millis, messages[i].end_offset_millis, i)
        )
        first = messages[order[0]]
        # Fast path: every new message sorts after every stored one (the streaming case), so positions are known.
        appending = last is None or (first.begin_offset_millis, first.end_offset_millis) >= (last[0], last[1])
        sequence = {index: existing + rank + 1 for rank, index in enumerate(order)}
        now = now_text()
        conn.executemany(
            "INSERT INTO sys_cs_message (sys_id, conversation, sequence, payload, participant, is_agent, sentiment,"
            " begin_offset_millis, end_offset_millis, source_message_id, is_internal, is_event, attributes,"
            " loudness_score, sys_created_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    new_sys_id(),
                    conversation_id,
                    sequence[index] if appending else 0,
                    message.content,
                    message.participant,
                    int(message.participant == "AGENT"),
                    message.sentiment,
                    message.begin_offset_millis,
                    message.end_offset_millis,
                    message.source_message_id,
                    int(message.is_internal),
                    int(message.is_event),
                    message.attributes,
                    message.loudness_score,
                    now,
                )
                for index, message in enumerate(messages)
            ],
        )
        if not appending:
            conn.execute(_RENUMBER, (conversation_id,))

    def add_messages(self, interaction_id: str, messages: Sequence[Message]) -> str:
        """Store messages (creating the conversation if needed); returns the conversation sys_id."""
        with self._transaction() as conn:
            interaction = self._interaction(conn, interaction_id)
            if interaction["state"] == CLOSED:
                raise _closed_error(interaction_id)
            conversation_id = self._ensure_conversation(conn, interaction)
            self._insert_messages(conn, conversation_id, messages)
            return conversation_id

    def save_transcript(self, transcript: Transcript) -> str:
        """Store a whole transcript once per interaction; a second one is an ``ERROR: ... already processed``."""
        interaction_id = transcript.interaction_id or ""
        with self._transaction() as conn:
            interaction = self._interaction(conn, interaction_id)
            if interaction["state"] == CLOSED:
                raise _closed_error(interaction_id)
            if interaction["transcript_processed"]:
                raise ApiError(
                    400,
                    f"ERROR: Transcript for interaction {interaction_id} has already been processed",
                    "A transcript can be saved once per interaction",
                    script_style=True,
                )
            conversation_id = self._ensure_conversation(conn, interaction)
            self._insert_messages(conn, conversation_id, transcript.messages)
            conn.execute(
                "UPDATE interaction SET transcript_processed = 1,"
                " conversation_started = COALESCE(?, conversation_started) WHERE sys_id = ?",
                (transcript.conversation_started, interaction_id),
            )
            return conversation_id

    def close_interaction(self, interaction_id: str, change: StateChange) -> None:
        """Close (idempotent: closed_at keeps the first close; a given recording URL is stored)."""
        with self._transaction() as conn:
            self._interaction(conn, interaction_id)
            conn.execute(
                "UPDATE interaction SET state = ?, closed_at = COALESCE(closed_at, ?),"
                " recording_url = COALESCE(?, recording_url) WHERE sys_id = ?",
                (CLOSED, now_text(), change.recording_url, interaction_id),
            )
            conn.execute("UPDATE sys_cs_conversation SET state = 'closed' WHERE interaction = ?", (interaction_id,))

    # ---- reads (the Table API, and tests) ----

    def query(
        self, table: str, query: tableapi.Query, *, limit: int | None = None, offset: int = 0
    ) -> tuple[list[dict[str, str]], int]:
        """Rows matching ``query`` as Table API strings, and the total before limit/offset."""
        fields = tableapi.check_table(table)
        where, params = tableapi.where_sql(table, query)
        columns = ", ".join(f'"{name}"' for name in fields)
        with self._lock:
            total = int(self._conn.execute(f"SELECT COUNT(*) FROM {table}{where}", params).fetchone()[0])
            rows = self._conn.execute(
                f"SELECT {columns} FROM {table}{where}{tableapi.order_sql(query)} LIMIT ? OFFSET ?",
                [*params, -1 if limit is None else limit, offset],
            ).fetchall()
        return [tableapi.to_strings(table, dict(row)) for row in rows], total

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A read-only SQL query under the store's lock (the live view's joins; never used to write)."""
        with self._lock:
            return list(self._conn.execute(sql, tuple(params)).fetchall())

    def client_session_of(self, table: str, row: dict[str, str]) -> str | None:
        """The ``client_session_id`` of the interaction a row belongs to (read ACLs by contact), or None."""
        if table == "interaction":
            return row.get("client_session_id")
        if table == "sys_cs_conversation":
            sql, key = "SELECT client_session_id FROM interaction WHERE sys_id = ?", row.get("interaction")
        elif table == "sys_cs_message":
            sql = (
                "SELECT i.client_session_id FROM sys_cs_conversation c JOIN interaction i ON i.sys_id = c.interaction "
                "WHERE c.sys_id = ?"
            )
            key = row.get("conversation")
        else:
            return None
        found = self.read(sql, (key,))
        return str(found[0][0]) if found and found[0][0] is not None else None

    def rows(self, table: str, sysparm_query: str = "") -> list[dict[str, str]]:
        """Every row of ``table`` matching an encoded query, as the Table API shows them."""
        return self.query(table, tableapi.parse_query(table, sysparm_query))[0]

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        """One row by sys_id, or None."""
        query = tableapi.Query(groups=[[tableapi.Condition("sys_id", "=", sys_id)]])
        found = self.query(table, query)[0] if sys_id else []
        return found[0] if found else None

    def count(self, table: str) -> int:
        tableapi.check_table(table)
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Row counts of every table (tests compare them before and after a rejected request)."""
        return {table: self.count(table) for table in tableapi.TABLES}

    def transcript(self, interaction_id: str) -> list[dict[str, str]]:
        """The interaction's messages in ``sequence`` order."""
        with self._lock:
            row = self._conn.execute(
                "SELECT channel_metadata_document FROM interaction WHERE sys_id = ?", (interaction_id,)
            ).fetchone()
        if row is None or not row[0]:
            return []
        return self.rows("sys_cs_message", f"conversation={row[0]}^ORDERBYsequence")
