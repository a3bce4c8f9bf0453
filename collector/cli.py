"""The ``intilery`` command: parses the arguments and hands over to the subcommand.

Each command module registers its own subcommand (``add_parser``) and runs it.
"""

from __future__ import annotations

import argparse
import sys

from collector import __version__
from collector.serve import demo, runtime, serving, snippet
from collector.config import ConfigError
from collector.engage import cli as engage
from collector.log import tail
from collector.profiles import cli as profiles
from collector.plans import cli as plans
from collector.privacy import archives as archive  # collector.log.archive's command, with privacy requests
from collector.privacy import cli as privacy
from collector.engage.audiences import cli as audiences
from collector.engage.destinations import cli as destinations
from collector.engage.journeys import cli as journeys
from collector.engage.email import cli as email
from collector.engage.email import campaign_cli as campaign

COMMANDS = (serving, demo, tail, snippet, archive, profiles, plans, privacy, engage, audiences, destinations,
            journeys, email, campaign)  # in the order of ``intilery --help``


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="intilery", description="Intilery tag + collector")
    parser.add_argument("--version", action="version", version=f"intilery {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    runtime.tune_malloc()  # before any thread starts (runtime's docstring)
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except serving.PortInUse as exc:
        print(f"intilery: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"intilery: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
