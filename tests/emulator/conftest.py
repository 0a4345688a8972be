"""Fixtures for the emulator tests: a started emulator per test (port 0) and an authenticated session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from voicebridge.emulator import EmulatorOptions, RunningEmulator, start_emulator

DATA = Path(__file__).parent / "data"
AUTH = ("admin", "admin")
API = "/api/now/v1/cs/voice-interactions"


def message(
    content: str = "hello", participant: str = "AGENT", begin: Any = 0, end: Any = 1000, **extra: Any
) -> dict[str, Any]:
    """A valid message body item; keyword arguments add or override fields."""
    return {
        "content": content,
        "participantId": participant,
        "beginOffsetMillis": begin,
        "endOffsetMillis": end,
        **extra,
    }


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with start_emulator(EmulatorOptions()) as running:
        yield running


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., RunningEmulator]]:
    """Start an emulator with the given EmulatorOptions fields; stopped after the test."""
    started: list[RunningEmulator] = []

    def make(**options: Any) -> RunningEmulator:
        running = start_emulator(EmulatorOptions(**options))
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.auth = AUTH
        yield http


def create_interaction(http: requests.Session, emulator: RunningEmulator, **body: Any) -> str:
    response = http.post(emulator.url + API, json={"userId": "+14085550100", **body}, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["interactionId"])
