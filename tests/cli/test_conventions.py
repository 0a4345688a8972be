"""README "Command-line conventions": a careless argument or environment problem is one line on stderr that names
it and what would be valid, exit status 2, never a traceback; the report owns stdout, the handler's logs go to
stderr; an unknown flag shows the usage of the subcommand it was given to."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import Voicebridge

pytestmark = pytest.mark.integration

FIXTURE = "events/full-call.jsonl"
NOT_A_FILE = "no-such-fixture.jsonl"


@pytest.fixture
def bad_fixture(tmp_path: Path) -> str:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"ContactId": "c-1", "EventType": \n')
    return str(path)


# No AWS credentials anywhere (and no instance metadata service to wait for).
NO_AWS_CREDENTIALS: dict[str, str | None] = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
}
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/voicebridge-parking"

# (argv, environment, what the one line must say)
CASES: dict[str, tuple[list[str], dict[str, str | None], list[str]]] = {
    "replay url without scheme": (
        ["replay", FIXTURE, "--servicenow-url", "127.0.0.1:8080", "--user", "u", "--password", "p"],
        {},
        ["--servicenow-url", "https://", "'127.0.0.1:8080'"],
    ),
    "replay batch size 0": (["replay", FIXTURE, "--batch-size", "0"], {}, ["--batch-size", "from 1 to 10000"]),
    "replay negative speed": (["replay", FIXTURE, "--speed", "-1"], {}, ["--speed", "greater than 0", "'-1'"]),
    "replay speed not a number": (["replay", FIXTURE, "--speed", "fast"], {}, ["--speed", "'fast'"]),
    "replay negative retries": (["replay", FIXTURE, "--max-retries", "-1"], {}, ["--max-retries", "at least 0"]),
    "replay unknown log level": (["replay", FIXTURE, "--log-level", "LOUD"], {}, ["--log-level", "WARNING"]),
    "replay missing fixture": (["replay", NOT_A_FILE], {}, ["FIXTURE", "no such file", NOT_A_FILE]),
    "replay folder as fixture": (["replay", "events"], {}, ["not a regular file", "'events'"]),
    "demo missing fixture": (["demo", NOT_A_FILE], {}, ["FIXTURE", "no such file", NOT_A_FILE]),
    "demo batch size 0": (["demo", "--batch-size", "0"], {}, ["--batch-size", "from 1 to 10000"]),
    "capture into a missing folder": (
        ["capture", "--stream", "s", "-o", "no-such-folder/out.jsonl"],
        {},
        ["--output", "does not exist", "no-such-folder"],
    ),
    "capture bad start": (["capture", "--stream", "s", "-o", "-", "--from", "yesterday"], {}, ["--from", "ISO 8601"]),
    "capture until before from": (
        ["capture", "--stream", "s", "-o", "-", "--from", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"],
        {},
        ["--until is before --from"],
    ),
    "trace bad contact id": (["trace", "not a contact!", "--log-group", "g"], {}, ["CONTACT_ID", "contact id"]),
    "trace bad since": (["trace", "c-1", "--log-group", "g", "--since", "soon"], {}, ["--since", "24h"]),
    "trace negative query timeout": (
        ["trace", "c-1", "--log-group", "g", "--query-timeout", "-5"],
        {},
        ["--query-timeout", "greater than 0"],
    ),
    "redrive max messages 0": (["redrive", "--max-messages", "0"], {}, ["--max-messages", "at least 1"]),
    "redrive long poll too long": (["redrive", "--wait-seconds", "30"], {}, ["--wait-seconds", "from 1 to 20"]),
    "redrive url not http": (["redrive", "--servicenow-url", "ftp://x"], {}, ["--servicenow-url", "http(s)"]),
    "chaos rate above 1": (["chaos", "--fault-rate", "2"], {}, ["--fault-rate", "at most 1"]),
    "chaos no calls": (["chaos", "--calls", "0"], {}, ["--calls", "at least 1"]),
    "unknown subcommand": (["replya", FIXTURE], {}, ["invalid choice", "'replya'", "replay"]),
    "redrive without AWS credentials": (
        ["redrive", "--queue-url", QUEUE],
        NO_AWS_CREDENTIALS,
        ["voicebridge redrive: AWS:", "credentials"],
    ),
    "redrive without an AWS region": (
        ["redrive", "--queue-url", QUEUE],
        {"AWS_DEFAULT_REGION": None, "AWS_REGION": None, "AWS_CONFIG_FILE": "/nonexistent/config"},
        ["voicebridge redrive: AWS:", "region"],
    ),
    "trace without AWS credentials": (
        ["trace", "c-1", "--log-group", "g"],
        NO_AWS_CREDENTIALS,
        ["voicebridge trace: AWS:", "credentials"],
    ),
    "handler setting out of range (ConfigurationError)": (
        ["replay", FIXTURE],
        {"MAX_WORKERS": "0"},
        ["the handler is not configured", "MAX_WORKERS", "between 1 and 64"],
    ),
    "plain http to a remote instance (ConfigurationError)": (
        ["replay", FIXTURE, "--servicenow-url", "http://example.invalid", "--user", "u", "--password", "p"],
        {},
        ["the handler is not configured", "SERVICENOW_URL", "https://"],
    ),
}


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], expected: list[str]) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in expected:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_a_careless_input_is_one_line_and_exit_2(voicebridge: Voicebridge, case: str) -> None:
    argv, env, expected = CASES[case]
    result = voicebridge(*argv, env=env)
    assert_one_line_exit_2(result, expected)
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["replay", "demo"])
def test_a_fixture_that_does_not_parse_names_file_and_line(
    voicebridge: Voicebridge, bad_fixture: str, command: str
) -> None:
    result = voicebridge(command, bad_fixture)
    assert_one_line_exit_2(result, [f"voicebridge {command}:", f"{bad_fixture}:1", "not JSON"])


def test_an_unknown_flag_shows_the_subcommands_usage(voicebridge: Voicebridge) -> None:
    result = voicebridge("replay", FIXTURE, "--frobnicate")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: voicebridge replay ")
    assert "--batch-size" in result.stderr  # the subcommand's flags, not the list of subcommands
    assert result.stderr.rstrip().splitlines()[-1] == "voicebridge replay: error: unrecognized arguments: --frobnicate"


def test_logs_go_to_stderr_and_the_report_to_stdout(voicebridge: Voicebridge) -> None:
    result = voicebridge("replay", FIXTURE, "--log-level", "INFO")
    assert result.returncode == 0, result.stderr
    stdout = result.stdout.splitlines()
    assert not [line for line in stdout if line.lstrip().startswith("{")], result.stdout
    assert stdout[0].startswith("contact ") and stdout[-1].startswith("records 73 ")
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(entry.get("message") == "batch done" for entry in logs)  # the log lines exist, on stderr


def test_the_default_log_level_keeps_stderr_quiet(voicebridge: Voicebridge) -> None:
    result = voicebridge("replay", FIXTURE)
    assert result.returncode == 0 and result.stderr == "", result.stderr
