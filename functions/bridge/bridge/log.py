"""The bridge's one Powertools Logger (JSON lines; per-contact keys are appended thread-safely by the processor).

Message content, caller numbers and secrets are never logged: log lines carry ids, counts, statuses and timings.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger()
