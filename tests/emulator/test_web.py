"""The live transcript view's endpoints through ``App.handle`` (no sockets, no browser): routing, JSON, statics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from voicebridge.emulator import web
from voicebridge.emulator.app import App, Request, Response
from voicebridge.emulator.options import EmulatorOptions
from voicebridge.emulator.store import Store
from voicebridge.emulator.validation import Message, NewInteraction, StateChange

pytestmark = pytest.mark.unit

RECORDING = "https://example.my.connect.aws/contact-trace-records/details/c-1"


@pytest.fixture
def app() -> Iterator[App]:
    store = Store()
    yield App(EmulatorOptions(), store)
    store.close()


def get(app: App, target: str, method: str = "GET", **headers: str) -> Response:
    return app.handle(Request(method, target, {name.lower(): value for name, value in headers.items()}))


def get_json(app: App, target: str) -> Any:
    response = get(app, target)
    assert response.status == 200, response.body
    assert response.content_type == web.JSON_TYPE
    return json.loads(response.body)


def say(content: str, participant: str, begin: int, end: int, **extra: Any) -> Message:
    return Message(content=content, participant=participant, begin_offset_millis=begin, end_offset_millis=end, **extra)


def test_empty_list(app: App) -> None:
    data = get_json(app, "/ui/api/interactions")
    assert data["interactions"] == [] and data["version"]


def test_list_counts_messages_and_notes_newest_first(app: App) -> None:
    store = app.store
    first = store.create_interaction(NewInteraction(user_id="u1", caller_phone_number="+14085550100"))
    second = store.create_interaction(NewInteraction(user_id="u2", client_session_id="c-2"))
    store.create_conversation(first, NewInteraction(user_id="u1"))
    store.add_messages(first, [say("hi", "AGENT", 0, 10), say("note", "AGENT", 0, 10, is_internal=True)])
    before = get_json(app, "/ui/api/interactions")
    assert [item["sys_id"] for item in before["interactions"]] == [second, first]
    newest, older = before["interactions"]
    assert (newest["message_count"], newest["note_count"], newest["state"]) == (0, 0, "new")
    assert (older["message_count"], older["note_count"], older["state"]) == (2, 1, "work_in_progress")
    assert older["caller_phone_number"] == "+14085550100" and older["closed_at"] == ""
    store.add_messages(first, [say("more", "CUSTOMER", 20, 30)])
    after = get_json(app, "/ui/api/interactions")
    assert after["version"] != before["version"]
    assert after["interactions"][1]["message_count"] == 3


def test_detail_is_in_agent_workspace_order_with_notes_and_recording(app: App) -> None:
    store = app.store
    interaction = store.create_interaction(NewInteraction(user_id="u1", client_session_id="c-1"))
    store.create_conversation(interaction, NewInteraction(user_id="u1"))
    store.add_messages(
        interaction,
        [
            say(
                "second",
                "CUSTOMER",
                5000,
                6000,
                sentiment="NEGATIVE",
                attributes='[{"key":"issuesDetected","value":"0-3"}]',
            ),
            say("first", "AGENT", 1000, 2000, sentiment="POSITIVE"),
        ],
    )
    # an out-of-order arrival is placed by offset, not arrival (the store renumbers)
    store.add_messages(
        interaction,
        [
            say(
                "Categories: x",
                "AGENT",
                1000,
                2000,
                is_internal=True,
                attributes='[{"key":"noteType","value":"categories"}]',
            )
        ],
    )
    detail = get_json(app, f"/ui/api/interactions/{interaction}")
    messages = detail["messages"]
    assert [m["content"] for m in messages] == ["first", "Categories: x", "second"]
    assert [m["sequence"] for m in messages] == [1, 2, 3]
    assert [(m["is_agent"], m["is_internal"]) for m in messages] == [(True, False), (True, True), (False, False)]
    assert messages[0]["sentiment"] == "POSITIVE" and messages[1]["sentiment"] == ""
    assert messages[1]["attributes"] == {"noteType": "categories"}
    assert messages[2]["attributes"] == {"issuesDetected": "0-3"}
    assert (messages[2]["begin_offset_millis"], messages[2]["end_offset_millis"]) == (5000, 6000)
    assert detail["interaction"]["recording_url"] == ""
    store.close_interaction(interaction, StateChange(state="closed_complete", recording_url=RECORDING))
    closed = get_json(app, f"/ui/api/interactions/{interaction}")["interaction"]
    assert closed["state"] == "closed_complete" and closed["closed_at"] and closed["recording_url"] == RECORDING


def test_detail_of_interaction_without_conversation(app: App) -> None:
    interaction = app.store.create_interaction(NewInteraction(user_id="u1"))
    detail = get_json(app, f"/ui/api/interactions/{interaction}")
    assert detail["messages"] == [] and detail["interaction"]["conversation"] == ""


def test_content_is_returned_verbatim_as_json(app: App) -> None:
    interaction = app.store.create_interaction(NewInteraction(user_id="u1"))
    hostile = '<img src=x onerror="alert(1)"></script>\u2028"'
    app.store.add_messages(interaction, [say(hostile, "CUSTOMER", 0, 1, attributes="not json")])
    response = get(app, f"/ui/api/interactions/{interaction}")
    message = json.loads(response.body)["messages"][0]
    assert message["content"] == hostile and message["attributes"] == {}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("target", ["/ui/api/interactions/nope", "/ui/api/interactions/", "/ui/api/x", "/ui/zzz"])
def test_unknown_is_404(app: App, target: str) -> None:
    response = get(app, target)
    assert response.status == 404 and json.loads(response.body)["error"]


def test_etag_revalidation(app: App) -> None:
    first = get(app, "/ui/api/interactions")
    etag = first.headers["ETag"]
    again = get(app, "/ui/api/interactions", **{"If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    app.store.create_interaction(NewInteraction(user_id="u1"))
    assert get(app, "/ui/api/interactions", **{"If-None-Match": etag}).status == 200


def test_page_and_statics(app: App) -> None:
    page = get(app, "/ui/")
    assert page.status == 200 and page.content_type == "text/html; charset=utf-8"
    assert b'src="/ui/static/app.js"' in page.body and b'href="/ui/static/style.css"' in page.body
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = get(app, "/ui/static/app.js")
    assert script.status == 200 and script.content_type.startswith("text/javascript")
    for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write", b"eval("):
        assert sink not in script.body  # untrusted transcript text goes through textContent only
    assert get(app, "/ui/static/style.css").content_type.startswith("text/css")
    redirect = get(app, "/ui")
    assert redirect.status == 301 and redirect.headers["Location"] == "/ui/"


@pytest.mark.parametrize("name", ["../app.py", "..%2Fapp.py", "missing.js", "app.py", ".hidden.js", "x/app.js"])
def test_static_refuses_anything_else(app: App, name: str) -> None:
    assert get(app, f"/ui/static/{name}").status == 404


def test_read_only_without_auth_and_not_counted(app: App) -> None:
    # no Authorization header anywhere above; writes are refused
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = get(app, "/ui/api/interactions", method=method)
        assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"
    assert get(app, "/ui/api/interactions", method="HEAD").status == 200
    assert app.stats.snapshot()["total"] == 0
    assert get(app, "/").status == 400  # the root stays ServiceNow's "no resource"
