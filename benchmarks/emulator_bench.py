"""Emulator throughput: POST /messages (10 messages each) from 16 keep-alive clients.

Two set-ups, both measured by ``run``:
- ``subprocess`` (the reported figure): ``voicebridge emulator --port 0`` in its own process, so the client
  threads do not share a GIL with the server;
- ``in_process``: ``start_emulator`` in this process (clients and server share the GIL; a lower bound).

    .venv/bin/python benchmarks/emulator_bench.py [--duration 3] [--clients 16] [--messages 10]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from voicebridge.emulator import EmulatorOptions, start_emulator
from voicebridge.emulator.process import emulator_subprocess

AUTH = ("admin", "admin")
API = "/api/now/v1/cs/voice-interactions"


@contextmanager
def _in_process() -> Iterator[str]:
    with start_emulator(EmulatorOptions()) as emulator:
        yield emulator.url


def _measure(url: str, duration_s: float, clients: int, messages_per_request: int) -> dict[str, Any]:
    interactions = []
    with requests.Session() as session:
        for index in range(clients):
            response = session.post(url + API, json={"userId": f"+1555000{index:04d}"}, auth=AUTH, timeout=10)
            interactions.append(response.json()["result"]["interactionId"])
    counts = [0] * clients
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        with requests.Session() as session:
            session.auth = AUTH
            target = f"{url}{API}/{interactions[index]}/messages"
            offset = 0
            start.wait()
            while time.perf_counter() < deadline[0]:
                batch = [
                    {
                        "id": f"{index}-{offset + n}",
                        "content": "Thank you for calling, how can I help you today?",
                        "participantId": "AGENT" if n % 2 else "CUSTOMER",
                        "beginOffsetMillis": (offset + n) * 1000,
                        "endOffsetMillis": (offset + n) * 1000 + 900,
                        "sentiment": "NEUTRAL",
                        "isInternalMessage": False,
                    }
                    for n in range(messages_per_request)
                ]
                offset += messages_per_request
                response = session.post(target, json=batch, timeout=30)
                if response.status_code == 200:
                    counts[index] += 1
                else:
                    errors[index] += 1

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + duration_s
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {
        "requests": sum(counts),
        "errors": sum(errors),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(sum(counts) / elapsed, 1),
        "messages_per_s": round(sum(counts) * messages_per_request / elapsed, 1),
    }


def run(duration_s: float = 3.0, clients: int = 16, messages_per_request: int = 10) -> dict[str, Any]:
    """Measure both set-ups; ``requests_per_s`` (top level) is the subprocess figure."""
    results: dict[str, Any] = {"clients": clients, "messages_per_request": messages_per_request}
    with emulator_subprocess() as url:
        results["subprocess"] = _measure(url, duration_s, clients, messages_per_request)
    with _in_process() as url:
        results["in_process"] = _measure(url, duration_s, clients, messages_per_request)
    results["requests_per_s"] = results["subprocess"]["requests_per_s"]
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--messages", type=int, default=10)
    arguments = parser.parse_args()
    outcome = run(arguments.duration, arguments.clients, arguments.messages)
    print(json.dumps(outcome, indent=2))
    print(
        f"emulator POST /messages: {outcome['requests_per_s']} req/s (subprocess server, {arguments.clients} clients)"
    )
