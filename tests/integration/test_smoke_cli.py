"""`voicebridge smoke --stack` as a user runs it: the installed command in its own process, AWS through
moto_server (AWS_ENDPOINT_URL), ServiceNow through the emulator process, both over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import requests

from tests.functional.test_smoke import deploy_fake_stack

pytestmark = pytest.mark.integration

VOICEBRIDGE = str(Path(sys.executable).parent / "voicebridge")


def smoke(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICEBRIDGE, "smoke", *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_smoke_passes_then_names_the_parked_records(aws_env: dict[str, str], emulator_process: str) -> None:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    deployed = deploy_fake_stack(emulator_process, name=name)

    healthy = smoke(aws_env, "--stack", name)

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert lines[0] == f"voicebridge smoke: stack {name}"
    assert lines[-1] == "smoke: 10 passed, 0 failed, 1 not checked"  # no Connect instance: not checked
    assert not [line for line in lines if line.startswith("{")]  # no JSON log lines in the report
    probe = next(line for line in lines if line.startswith("✓ voice interaction API:"))
    session = probe.split("clientSessionId ")[1].split(",")[0]
    rows = requests.get(
        f"{emulator_process}/api/now/table/interaction",
        params={"sysparm_query": f"client_session_id={session}"},
        auth=("admin", "admin"),
        timeout=10,
    ).json()["result"]
    assert [row["state"] for row in rows] == ["closed_complete"]

    boto3.client("sqs").send_message(QueueUrl=deployed.parking_queue_url, MessageBody="{}")
    broken = smoke(aws_env, "--stack", name, "--read-only")

    assert broken.returncode == 1
    assert "✗ parking queue: holds 1 message(s)" in broken.stdout
    assert broken.stdout.splitlines()[-1] == "smoke: 8 passed, 1 failed, 2 not checked"


def test_unknown_stack_is_one_line_and_exit_2(aws_env: dict[str, str]) -> None:
    result = smoke(aws_env, "--stack", "no-such-stack")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("voicebridge smoke: stack 'no-such-stack'")
