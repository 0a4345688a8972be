"""The ``voicebridge`` command line: ``emulator``, ``replay``, ``demo``, ``redrive``, ``capture``, ``trace``, ``chaos``.

Each subcommand lives in its own module and is imported only when chosen, so ``voicebridge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

# subcommand -> (module, one-line help). Each module exposes add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "emulator": ("voicebridge.emulator.cli", "serve the ServiceNow Voice Interaction API emulator"),
    "connect": ("voicebridge.connect.cli", "serve the Amazon Connect stand-in (lookups and Contact Lens segments)"),
    "replay": ("voicebridge.feed.replay", "feed fixtures through the real Lambda handler"),
    "demo": ("voicebridge.feed.demo", "replay the recorded demo call and print what ServiceNow stored"),
    "redrive": ("voicebridge.operate.redrive", "re-feed parked records through the handler after a fix"),
    "sweep": (
        "voicebridge.operate.sweep",
        "run the sweeper once now: close idle interactions (or list them, --dry-run)",
    ),
    "capture": ("voicebridge.operate.capture", "read a Kinesis stream into a replayable JSON Lines fixture"),
    "trace": ("voicebridge.operate.trace", "one contact's timeline from CloudWatch Logs, its state and parked items"),
    "chaos": ("voicebridge.soak.chaos", "soak: concurrent synthetic calls under faults, crashes and duplicates"),
    "backfill": ("voicebridge.feed.backfill", "import Contact Lens post-call analysis files from S3 into ServiceNow"),
    "smoke": (
        "voicebridge.operate.smoke",
        "after sam deploy: check the secret, ServiceNow, stream mapping, alarms, queues",
    ),
}


class CliParser(argparse.ArgumentParser):
    """Command-line conventions (README "Command-line conventions"): a bad value is one line on stderr naming the
    argument and what would be valid, exit status 2; a malformed command line (unknown flag, missing argument)
    also shows the usage of the subcommand it was meant for."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):  # a value argparse or one of voicebridge.argtypes refused
            self.exit(2, f"{self.prog}: error: {message}\n")
        super().error(message)


def _build(argv: Sequence[str]) -> tuple[CliParser, dict[str, CliParser]]:
    parser = CliParser(prog="voicebridge", description=__doc__.splitlines()[0] if __doc__ else None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    by_name: dict[str, CliParser] = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        by_name[name] = subparser
        if name == chosen:  # only the chosen subcommand's module is imported
            module = importlib.import_module(module_name)
            module.add_arguments(subparser)
            subparser.set_defaults(run=module.run)
    return parser, by_name


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    return _build(argv)[0]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = _build(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would blame the top-level parser (and show its usage); the flag was meant for the subcommand.
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    from bridge.errors import ConfigurationError

    try:
        return int(args.run(args))
    except ConfigurationError as exc:  # names the setting, never a secret's value
        print(f"voicebridge {args.command}: the handler is not configured: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `voicebridge demo | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
