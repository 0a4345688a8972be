"""A local ServiceNow Voice Interaction API emulator (with Table API read-back, OAuth and fault injection).

Embedding API (the bridge's tests, replay and the demo use these names)::

    from voicebridge.emulator import EmulatorOptions, start_emulator

    with start_emulator(EmulatorOptions(lenient=True)) as emulator:
        url = f"{emulator.url}/api/now/v1/cs/voice-interactions"
        requests.post(url, json={"userId": "+1"}, auth=("admin", "admin"))
        emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": "ambiguous_drop"}])
        emulator.store.rows("sys_cs_message", "ORDERBYsequence")
"""

from voicebridge.emulator.options import EmulatorOptions, RateLimit
from voicebridge.emulator.server import RunningEmulator, start_emulator

__all__ = ["EmulatorOptions", "RateLimit", "RunningEmulator", "start_emulator"]
