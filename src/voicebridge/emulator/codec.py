"""Wire formats: content negotiation, strict and lenient JSON, ServiceNow's ``<request><entry>`` XML.

Pure functions (no sockets), so every parsing rule has a unit test.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any, Literal

from voicebridge.emulator.errors import READ_ERROR, ApiError

Format = Literal["json", "xml"]

MAX_BODY_BYTES = 10 * 1024 * 1024  # ServiceNow rejects request bodies over 10 MB

_JSON_TYPES = {"application/json", "text/json"}
_XML_TYPES = {"application/xml", "text/xml"}


def _media_ranges(header: str) -> list[tuple[str, float, int]]:
    ranges = []
    for position, part in enumerate(header.split(",")):
        fields = [field.strip() for field in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality, position))
    return ranges


def negotiate_accept(header: str | None) -> Format | None:
    """The response format for an ``Accept`` header: JSON by default, ``None`` when nothing offered fits (406)."""
    if header is None or not header.strip():
        return "json"
    candidates = sorted(_media_ranges(header), key=lambda item: (-item[1], item[2]))
    for media, quality, _ in candidates:
        if quality <= 0:
            continue
        if media in _JSON_TYPES or media in ("*/*", "application/*") or media.endswith("+json"):
            return "json"
        if media in _XML_TYPES or media == "text/*" or media.endswith("+xml"):
            return "xml"
    return None


def request_format(content_type: str | None) -> Format | None:
    """The request body format for a ``Content-Type``: JSON when absent, ``None`` when unsupported (415)."""
    if content_type is None or not content_type.strip():
        return "json"
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in _XML_TYPES or media.endswith("+xml"):
        return "xml"
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 has no NaN/Infinity


# Characters outside strings that the reference's samples use as whitespace (U+202F, U+00A0, ...).
_TRAILING_JUNK = set(" \t\r\n\u2019\u2018\u201c\u201d'")


def lenient_json_text(text: str) -> str:
    """Repair the reference's sample quirks outside strings: Unicode spaces become spaces; trailing commas go."""
    out: list[str] = []
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            out.append(char)
        elif char in "}]":
            # drop a comma that only whitespace separates from this closer
            index = len(out) - 1
            while index >= 0 and out[index] in " \t\r\n":
                index -= 1
            if index >= 0 and out[index] == ",":
                del out[index]
            out.append(char)
        elif char.isspace() or char == "\ufeff":
            out.append(" " if char not in "\t\r\n" else char)
        else:
            out.append(char)
    return "".join(out)


def parse_json(body: bytes, *, lenient: bool = False) -> Any:
    """Decode a JSON body (RFC 8259; with ``lenient`` the reference's quirks too) or raise 400."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, READ_ERROR, "Request body is not valid UTF-8") from exc
    if not text.strip():
        raise ApiError(400, READ_ERROR, "Empty request body")
    try:
        if not lenient:
            return json.loads(text, parse_constant=_reject_constant)
        repaired = lenient_json_text(text)
        decoder = json.JSONDecoder(parse_constant=_reject_constant)
        start = len(repaired) - len(repaired.lstrip())
        value, end = decoder.raw_decode(repaired, start)
        if any(char not in _TRAILING_JUNK and not char.isspace() for char in repaired[end:]):
            raise ValueError(f"Extra data at character {end}")
        return value
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, READ_ERROR, f"Invalid JSON: {str(exc)[:200]}") from exc


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _element_value(element: ET.Element) -> Any:
    children = list(element)
    if not children:
        return element.text or ""
    if all(_local(child.tag) == "entry" for child in children):
        return [_element_value(child) for child in children]
    result: dict[str, Any] = {}
    for child in children:
        name, value = _local(child.tag), _element_value(child)
        if name in result:
            existing = result[name]
            result[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            result[name] = value
    return result


_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_xml(body: bytes) -> Any:
    """Decode ``<request>`` XML: ``<entry>`` children become a list, other children a dict, leaves strings."""
    if not body.strip():
        raise ApiError(400, READ_ERROR, "Empty request body")
    if _DTD.search(body):  # no entity expansion games
        raise ApiError(400, READ_ERROR, "DTDs are not accepted")
    try:
        root = ET.fromstring(body)
    except (ET.ParseError, ValueError, RecursionError) as exc:
        raise ApiError(400, READ_ERROR, f"Invalid XML: {str(exc)[:200]}") from exc
    return _element_value(root)


def parse_body(body: bytes, fmt: Format, *, lenient: bool = False) -> Any:
    return parse_json(body, lenient=lenient) if fmt == "json" else parse_xml(body)


def as_object(value: Any, fmt: Format) -> dict[str, Any]:
    """The body of an object endpoint; XML may wrap it in one ``<entry>`` or not."""
    if fmt == "xml":
        if value == "":
            return {}
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid request body", "Expected an object")
    return value


def as_list(value: Any, fmt: Format) -> list[Any]:
    """The body of the /messages endpoint: a top-level JSON array, or XML ``<entry>`` elements."""
    if fmt == "xml" and value == "":
        return []
    if not isinstance(value, list):
        raise ApiError(400, "Invalid request body", "Expected an array of messages")
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _xml_into(parent: ET.Element, tag: str, value: Any) -> None:
    element = ET.SubElement(parent, tag)
    if isinstance(value, dict):
        for key, item in value.items():
            _xml_into(element, str(key), item)
    elif isinstance(value, list):
        for item in value:
            _xml_into(element, "entry", item)
    else:
        element.text = _text(value)


def _xml_document(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="utf-8", xml_declaration=False)


def render_result(result: Any, fmt: Format) -> bytes:
    """``{"result": ...}`` or ``<response><result>..</result></response>`` (a list: one ``<result>`` each)."""
    if fmt == "json":
        return json.dumps({"result": result}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    root = ET.Element("response")
    for item in result if isinstance(result, list) else [result]:
        _xml_into(root, "result", item)
    return _xml_document(root)


def render_error(message: str, detail: str | None, fmt: Format) -> bytes:
    """ServiceNow's error envelope, JSON or XML."""
    if fmt == "json":
        envelope = {"error": {"message": message, "detail": detail}, "status": "failure"}
        return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    root = ET.Element("response")
    error = ET.SubElement(root, "error")
    ET.SubElement(error, "detail").text = detail or ""
    ET.SubElement(error, "message").text = message
    ET.SubElement(root, "status").text = "failure"
    return _xml_document(root)


CONTENT_TYPES: dict[Format, str] = {"json": "application/json;charset=UTF-8", "xml": "application/xml;charset=UTF-8"}
