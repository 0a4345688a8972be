"""The ``voicebridge`` command line: ``emulator``, ``replay``, ``demo``, ``redrive``, ``capture``, ``trace``, ``chaos``.

Each subcommand lives in its own module and is imported only when chosen, so ``voicebridge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help). Each module exposes add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "emulator": ("voicebridge.emulator.cli", "serve the ServiceNow Voice Interaction API emulator"),
    "replay": ("voicebridge.replay", "feed fixtures through the real Lambda handler"),
    "demo": ("voicebridge.demo", "replay the recorded demo call and print what ServiceNow stored"),
    "redrive": ("voicebridge.redrive", "re-feed parked records through the handler after a fix"),
    "capture": ("voicebridge.capture", "read a Kinesis stream into a replayable JSON Lines fixture"),
    "trace": ("voicebridge.trace", "one contact's timeline from CloudWatch Logs, its state and parked items"),
    "chaos": ("voicebridge.chaos", "soak: concurrent synthetic calls under faults, crashes and duplicates"),
    "backfill": ("voicebridge.backfill", "import Contact Lens post-call analysis files from S3 into ServiceNow"),
    "smoke": ("voicebridge.smoke", "after sam deploy: check the secret, ServiceNow, stream mapping, alarms, queues"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebridge", description=__doc__.splitlines()[0] if __doc__ else None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the chosen subcommand's module is imported
            module = importlib.import_module(module_name)
            module.add_arguments(subparser)
            subparser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `voicebridge demo | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
