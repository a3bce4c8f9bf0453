"""``intilery engage check``: the definitions (audiences, computed traits, destinations) checked as the collector loads them.

::

    intilery engage check [--config FILE]
    engage/audiences/vip.yaml:7: unknown operator 'at_least': use one of eq, ne, ...   # each mistake; exit 1
    engage/: 3 audiences, 2 computed traits, 1 destination: all good                 # exit 0

The folder is ``definitions.folder(config)``: ``engage_dir``, or ``engage/`` beside the configuration
file. Every mistake is one ``file:line: reason`` line on standard output, all of them at once (a CI
step or an editor reads them); a folder that does not exist is an error too (a mistyped
``engage_dir`` would otherwise check nothing). A file in ``audiences/`` or ``traits/`` that is not
read (not ``.yaml``, ``.yml`` or ``.json``) is named on standard error, without failing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from collector.config import load_config
from collector.engage import definitions
from collector.engage.definitions import DefinitionError

_READ = (".yaml", ".yml", ".json")
_SUFFIXES = {"templates": (".liquid",)}  # a kind whose files are not YAML
# The other kinds' checks: (folder, the module whose ``check(root)`` lists its problems, ``file:line: reason``)
CHECKS = (("destinations", "collector.engage.destinations.definitions"), ("journeys", "collector.engage.journeys.definitions"),
          ("templates", "collector.engage.email.templates"))


def engage_flags(parser: argparse.ArgumentParser, holding: str) -> None:
    """The flags of the engage subcommands that read the profile database (``holding``: what it holds for them)."""
    parser.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    parser.add_argument("--data-dir", help="the collector's data directory (default ./data)")
    parser.add_argument("--profiles-db", help=f"the profile database holding {holding} (default DATA_DIR/profiles.db)")
    parser.add_argument("--engage-dir", help="the definitions' folder (default engage/ beside the configuration)")


def engage_config(args: argparse.Namespace):
    """The configuration those flags name."""
    flags = ("data_dir", "profiles_db", "engage_dir")
    return load_config(args.config, {n: getattr(args, n, None) for n in flags}, with_dev_source=False)


def add_parser(commands: Any) -> None:
    """Register ``intilery engage`` (``check``)."""
    engage = commands.add_parser("engage", help="audiences and computed traits: check their definitions")
    actions = engage.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="check every definition in the engage folder (file:line: reason for each mistake; exit 1)")
    check.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG); the folder is its engage_dir, else engage/ beside it")
    check.set_defaults(run=cmd_check)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config, with_dev_source=False)
    root = definitions.folder(config)
    if not root.is_dir():
        where = ("the configuration's engage_dir" if config.engage_dir is not None else
                 "engage/ beside the configuration file, or in the current directory without one; engage_dir sets another")  # fmt: skip
        print(f"intilery: {root}/ is not a folder: nothing to check (the definitions' folder is {where})", file=sys.stderr)
        return 1
    for kind in ("audiences", "traits", *(kind for kind, _ in CHECKS)):
        folder = root / kind
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            if path.is_file() and path.suffix not in _SUFFIXES.get(kind, _READ) and not path.name.startswith(".") and not path.name.endswith("~"):
                print(f"{path}: not read (a definition is a {'.liquid' if kind in _SUFFIXES else '.yaml, .yml or .json'} file)", file=sys.stderr)
    problems: list[str] = []
    try:
        found = definitions.load(root)
    except DefinitionError as exc:
        problems, found = list(exc.problems), None
    others = []
    for kind, module in CHECKS:
        problems += importlib.import_module(module).check(root)
        count = sum(1 for p in (root / kind).iterdir() if p.suffix in _SUFFIXES.get(kind, _READ)) if (root / kind).is_dir() else 0
        others.append(_count(count, kind.rstrip("s"), kind))
    if problems:
        for problem in problems:
            print(problem)
        print(f"intilery engage check: {_count(len(problems), 'mistake', 'mistakes')} in {root}/", file=sys.stderr)
        return 1
    print(f"{root}/: {_count(len(found.audiences), 'audience', 'audiences')}, "
          f"{_count(len(found.traits), 'computed trait', 'computed traits')}, {', '.join(others)}: all good")  # fmt: skip
    return 0
