"""``voicebridge emulator`` in its own process: its CPU then does not compete with the caller for the GIL
(benchmarks), and the integration tests speak to it exactly as a user's client would."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence

LISTENING = "listening on "


@contextlib.contextmanager
def emulator_subprocess(arguments: Sequence[str] = ()) -> Iterator[str]:
    """Start ``voicebridge emulator --port 0 ARGUMENTS`` with this interpreter; yield its URL; terminate it after."""
    command = [sys.executable, "-m", "voicebridge.cli", "emulator", "--port", "0", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith(LISTENING):
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield line[len(LISTENING) :]
    finally:
        process.terminate()
        process.wait(timeout=10)
