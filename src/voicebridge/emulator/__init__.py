"""A local ServiceNow Voice Interaction API emulator (with Table API read-back, OAuth and fault injection).

Embedding API (the bridge's tests, replay and the demo use these names)::

    from voicebridge.emulator import EmulatorOptions, start_emulator

    with start_emulator(EmulatorOptions(lenient=True)) as emulator:
        url = f"{emulator.url}/api/now/v1/cs/voice-interactions"
        requests.post(url, json={"userId": "+1"}, auth=("admin", "admin"))
        emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": "ambiguous_drop"}])
        emulator.store.rows("sys_cs_message", "ORDERBYsequence")

    # what a real node does (options.py, gates.py): sessions, per-user hourly quota, filtered reads, capacity
    EmulatorOptions(sessions=True, rate_limit="1000/3600", filtered_reads=("sys_cs_message",), semaphores=8,
                    queue_depth=16, latency_ms=100)
"""

from voicebridge.emulator.options import EmulatorOptions, RateLimit
from voicebridge.emulator.server import RunningEmulator, start_emulator

__all__ = ["EmulatorOptions", "RateLimit", "RunningEmulator", "start_emulator"]
