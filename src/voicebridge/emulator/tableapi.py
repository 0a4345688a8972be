"""The Table API read model: table schemas, ``sysparm_query`` parsing and its translation to SQL.

Supported encoded-query syntax: conditions joined by ``^`` (AND) and ``^OR`` (OR with the previous
condition, binding tighter than AND as in ServiceNow), operators ``=``, ``!=``, ``IN``, ``NOT IN``,
``ISEMPTY``, ``ISNOTEMPTY``, ``STARTSWITH``, ``LIKE`` (contains), and ``ORDERBY<field>`` /
``ORDERBYDESC<field>``. Unlike a real instance, which silently ignores an invalid condition and returns
every row, an unknown field or operator is a 400 here: a typo in a test query should fail loudly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from voicebridge.emulator.errors import ApiError

TEXT, INTEGER, BOOLEAN = "text", "integer", "boolean"

# table -> exposed field -> type (insertion order is the response's field order)
TABLES: dict[str, dict[str, str]] = {
    "interaction": {
        "sys_id": TEXT,
        "number": TEXT,
        "type": TEXT,
        "state": TEXT,
        "user_id": TEXT,
        "client_session_id": TEXT,
        "caller_phone_number": TEXT,
        "assigned_to": TEXT,
        "inbound_id": TEXT,
        "recording_url": TEXT,
        "conversation_started": TEXT,
        "channel_metadata_table": TEXT,
        "channel_metadata_document": TEXT,
        "opened_at": TEXT,
        "closed_at": TEXT,
        "sys_created_on": TEXT,
    },
    "sys_cs_conversation": {
        "sys_id": TEXT,
        "interaction": TEXT,
        "state": TEXT,
        "sys_created_on": TEXT,
    },
    "sys_cs_message": {
        "sys_id": TEXT,
        "conversation": TEXT,
        "sequence": INTEGER,
        "payload": TEXT,
        "participant": TEXT,
        "is_agent": BOOLEAN,
        "sentiment": TEXT,
        "begin_offset_millis": INTEGER,
        "end_offset_millis": INTEGER,
        "source_message_id": TEXT,
        "is_internal": BOOLEAN,
        "is_event": BOOLEAN,
        "attributes": TEXT,
        "loudness_score": TEXT,
        "sys_created_on": TEXT,
    },
}

OPERATORS = ("!=", "NOT IN", "IN", "ISNOTEMPTY", "ISEMPTY", "STARTSWITH", "LIKE", "=")
_CONDITION = re.compile(r"([a-z_][a-z0-9_]*)(" + "|".join(re.escape(op) for op in OPERATORS) + r")(.*)", re.DOTALL)


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    value: str


@dataclass
class Query:
    """AND of OR-groups, plus the ORDERBY list ``(field, descending)``."""

    groups: list[list[Condition]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)


def check_table(table: str) -> dict[str, str]:
    try:
        return TABLES[table]
    except KeyError:
        raise ApiError(400, f"Invalid table {table}", None) from None


def _check_field(table: str, name: str) -> None:
    if name not in TABLES[table]:
        raise ApiError(400, "Invalid query", f"Unknown field {name!r} in table {table}")


def parse_query(table: str, text: str | None) -> Query:
    """Parse an encoded query for ``table`` (validated: unknown fields and operators are a 400)."""
    check_table(table)
    query = Query()
    if not text:
        return query
    for term in text.split("^"):
        if not term:
            continue
        if term.startswith("ORDERBYDESC"):
            _check_field(table, term[len("ORDERBYDESC") :])
            query.order.append((term[len("ORDERBYDESC") :], True))
            continue
        if term.startswith("ORDERBY"):
            _check_field(table, term[len("ORDERBY") :])
            query.order.append((term[len("ORDERBY") :], False))
            continue
        is_or = term.startswith("OR") and query.groups
        condition_text = term[2:] if is_or else term
        match = _CONDITION.fullmatch(condition_text)
        if not match:
            raise ApiError(400, "Invalid query", f"Cannot parse condition {term!r}")
        _check_field(table, match.group(1))
        condition = Condition(match.group(1), match.group(2), match.group(3))
        if is_or:
            query.groups[-1].append(condition)
        else:
            query.groups.append([condition])
    return query


def _sql_value(kind: str, value: str) -> Any:
    if kind == BOOLEAN:
        lowered = value.strip().lower()
        return 1 if lowered in ("true", "1") else 0 if lowered in ("false", "0") else None
    return value


def _condition_sql(table: str, condition: Condition) -> tuple[str, list[Any]]:
    column = '"' + condition.field + '"'
    kind = TABLES[table][condition.field]
    op, value = condition.operator, condition.value
    if op == "ISEMPTY" or (op == "=" and value == ""):
        return f"({column} IS NULL OR {column} = '')", []
    if op == "ISNOTEMPTY" or (op == "!=" and value == ""):
        return f"({column} IS NOT NULL AND {column} != '')", []
    if op in ("IN", "NOT IN"):
        items = [_sql_value(kind, item) for item in value.split(",")]
        marks = ",".join("?" for _ in items)
        if op == "IN":
            return f"{column} IN ({marks})", items
        return f"({column} IS NULL OR {column} NOT IN ({marks}))", items
    if op == "STARTSWITH":
        return f"substr(CAST({column} AS TEXT), 1, ?) = ?", [len(value), value]
    if op == "LIKE":
        return f"instr(CAST({column} AS TEXT), ?) > 0", [value]
    if op == "!=":
        return f"({column} IS NULL OR {column} != ?)", [_sql_value(kind, value)]
    return f"{column} = ?", [_sql_value(kind, value)]


def where_sql(table: str, query: Query) -> tuple[str, list[Any]]:
    """``(" WHERE ...", params)`` for the query's conditions ('' when none)."""
    clauses: list[str] = []
    params: list[Any] = []
    for group in query.groups:
        parts = []
        for condition in group:
            sql, values = _condition_sql(table, condition)
            parts.append(sql)
            params.extend(values)
        clauses.append("(" + " OR ".join(parts) + ")")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def order_sql(query: Query) -> str:
    terms = [f'"{name}" {"DESC" if descending else "ASC"}' for name, descending in query.order]
    return " ORDER BY " + ", ".join([*terms, "rowid ASC"])


def to_strings(table: str, row: dict[str, Any]) -> dict[str, str]:
    """A stored row as the Table API shows it: every value a string ('' for null, 'true'/'false')."""
    kinds = TABLES[table]
    result: dict[str, str] = {}
    for name, value in row.items():
        if value is None:
            result[name] = ""
        elif kinds.get(name) == BOOLEAN:
            result[name] = "true" if value else "false"
        else:
            result[name] = str(value)
    return result


def parse_fields(table: str, text: str | None) -> list[str]:
    """``sysparm_fields``: the requested fields that exist (a real instance ignores unknown names too)."""
    fields = TABLES[table]
    if not text:
        return list(fields)
    chosen = [name.strip() for name in text.split(",") if name.strip() in fields]
    return list(dict.fromkeys(chosen))


def parse_count(name: str, text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,18}", text.strip()):
        raise ApiError(400, f"Invalid value for {name}", f"{name} must be a non-negative integer, got {text!r}")
    return int(text.strip())
