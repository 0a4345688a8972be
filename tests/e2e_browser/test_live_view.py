"""The live transcript view in headless Chromium while ``voicebridge replay`` (a process) feeds the emulator.

Checks, in the browser's DOM: bubbles appear and grow while the replay runs; at the end every transcript
message and note is shown in Agent Workspace order (the store's ``sequence``), notes set apart, agent and
customer on opposite sides, the recording link once closed; hostile content is shown as text.
Set LIVE_VIEW_SCREENSHOT=/path.png to keep a screenshot taken mid-replay.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from voicebridge.emulator import RunningEmulator, start_emulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VOICEBRIDGE = str(Path(sys.executable).parent / "voicebridge")
FIXTURE = ROOT / "events" / "full-call.jsonl"
CONTACT = "5c3f0c1e-8c1a-4d8e-9b7a-2f1e3d4c5b6a"
TRANSCRIPT_MESSAGES, NOTES = 45, 4
HOSTILE = '<img src=x onerror="window.__pwned=1"><b>bold</b></p><script>window.__pwned=2</script>'

MESSAGES_JS = """
return Array.from(document.querySelectorAll('#conversation > li.msg')).map((li) => {
  const box = li.querySelector('.bubble, .note-box');
  const rect = (box || li).getBoundingClientRect();
  const text = li.querySelector('.text');
  return {...li.dataset, text: text ? text.textContent : null, left: rect.left, right: rect.right,
          tag: box ? box.tagName.toLowerCase() : null, background: box ? getComputedStyle(box).backgroundColor : null};
});
"""


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with start_emulator() as running:
        yield running


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def test_live_view_follows_a_replay(browser: Any, emulator: RunningEmulator, tmp_path: Path) -> None:
    auth = ("admin", "admin")
    api = f"{emulator.url}/api/now/v1/cs/voice-interactions"
    hostile_id = requests.post(api, json={"userId": "probe"}, auth=auth, timeout=10).json()["result"]["interactionId"]
    message = {"content": HOSTILE, "participantId": "CUSTOMER", "beginOffsetMillis": 0, "endOffsetMillis": 1}
    assert requests.post(f"{api}/{hostile_id}/messages", json=[message], auth=auth, timeout=10).status_code == 200

    def script(source: str) -> Any:
        return browser.execute_script(source)

    def bubbles() -> int:
        return int(script("return document.querySelectorAll('#conversation > li.msg.transcript').length"))

    def shown_interaction() -> str:
        return str(script("return document.getElementById('conversation').dataset.interaction || ''"))

    browser.get(emulator.url + "/ui/")
    wait_for(lambda: script("return document.getElementById('status').dataset.state") == "live", 10, "the page")
    wait_for(lambda: shown_interaction() == hostile_id, 5, "the newest interaction to be shown")

    log = (tmp_path / "replay.log").open("w")
    replay = subprocess.Popen(
        [VOICEBRIDGE, "replay", str(FIXTURE), "--servicenow-url", emulator.url, "--user", auth[0]]
        + ["--password", auth[1], "--speed", "20", "--batch-size", "5"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    try:
        # the page follows the replay's interaction as soon as it exists, and its bubbles grow while it runs
        wait_for(lambda: shown_interaction() not in ("", hostile_id), 20, "the replay's interaction")
        first = wait_for(bubbles, 20, "the first bubbles")
        grown = wait_for(lambda: bubbles() > first and bubbles(), 20, "more bubbles")
        assert replay.poll() is None, "the replay finished before growth was seen: not a live update"
        assert first < grown < TRANSCRIPT_MESSAGES
        screenshot = os.environ.get("LIVE_VIEW_SCREENSHOT")
        if screenshot:
            wait_for(lambda: bubbles() >= 12 or replay.poll() is not None, 20, "a dozen bubbles")
            browser.save_screenshot(screenshot)
        assert replay.wait(timeout=60) == 0, (tmp_path / "replay.log").read_text()[-2000:]
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
        log.close()

    (interaction,) = emulator.store.rows("interaction", f"client_session_id={CONTACT}")
    stored = emulator.store.transcript(interaction["sys_id"])
    assert len(stored) == TRANSCRIPT_MESSAGES + NOTES
    assert shown_interaction() == interaction["sys_id"]
    wait_for(
        lambda: (
            script("return document.getElementById('conversation').dataset.state") == "closed_complete"
            and len(script(MESSAGES_JS)) == len(stored)
        ),
        10,
        "the closed interaction with every message",
    )
    shown = script(MESSAGES_JS)

    # everything, in the store's (Agent Workspace's) order, with the stored text
    assert [m["sysId"] for m in shown] == [row["sys_id"] for row in stored]
    assert [int(m["sequence"]) for m in shown] == list(range(1, len(stored) + 1))
    offsets = [(int(m["begin"]), int(m["end"])) for m in shown]
    assert offsets == sorted(offsets)
    assert [m["text"] for m in shown] == [row["payload"] for row in stored]
    assert [m["kind"] for m in shown].count("transcript") == TRANSCRIPT_MESSAGES
    notes = [m for m in shown if m["kind"] == "note"]
    assert len(notes) == NOTES

    # notes set apart: their own element and colour, centred between the two sides
    transcript = [m for m in shown if m["kind"] == "transcript"]
    agent = [m for m in transcript if m["participant"] == "AGENT"]
    customer = [m for m in transcript if m["participant"] == "CUSTOMER"]
    assert agent and customer
    assert {m["tag"] for m in notes} == {"aside"} and {m["tag"] for m in transcript} == {"div"}
    assert {m["background"] for m in notes}.isdisjoint({m["background"] for m in transcript})
    assert min(m["right"] for m in agent) > max(m["right"] for m in customer)  # agent right, customer left
    assert max(m["left"] for m in customer) < min(m["left"] for m in notes)
    labels = script("return Array.from(document.querySelectorAll('li.note .note-label')).map((n) => n.textContent)")
    assert labels == ["Agent-only note"] * NOTES

    # the recording link, once closed
    link = browser.find_element("id", "recording-link")
    assert link.is_displayed() and link.get_attribute("href") == interaction["recording_url"]
    item = browser.find_element("css selector", f'li.interaction[data-sys-id="{interaction["sys_id"]}"]')
    assert item.get_attribute("data-state") == "closed_complete"
    assert item.get_attribute("data-message-count") == str(len(stored))

    # transcripts are untrusted: the probe's markup is shown as text and never runs
    browser.execute_script(f"window.location.hash = '#/i/{hostile_id}'")
    wait_for(lambda: shown_interaction() == hostile_id, 5, "the probe interaction")
    (probe,) = script(MESSAGES_JS)
    assert probe["text"] == HOSTILE
    assert (
        script("return document.querySelectorAll('#conversation img, #conversation b, #conversation script').length")
        == 0
    )
    assert script("return window.__pwned === undefined")
