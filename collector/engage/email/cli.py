"""``intilery email preview NAME --profile user_id:u1``: the template rendered for a real person,
printed as the message would go (headers, the text part, the HTML part). A variable the person
lacks is an error here (exit 1, naming it), where a send would render it empty."""

from __future__ import annotations

import argparse
import sys
import time

from collector.config import load_config
from collector.engage import definitions
from collector.engage.definitions import DefinitionError
from collector.engage.email import message, templates, tokens, variables
from collector.profiles.cli import _open
from collector.profiles.rules import PROFILE_FORM, parse_profile


def add_parser(commands) -> None:
    email = commands.add_parser("email", help="email templates: preview one for a person")
    actions = email.add_subparsers(dest="action", required=True)
    preview = actions.add_parser("preview", help="print a template rendered for a person (a missing variable is an error)")
    preview.add_argument("name", help="the template: engage/templates/NAME.liquid")
    preview.add_argument("--profile", required=True, help="the person: " + PROFILE_FORM)
    preview.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    preview.set_defaults(run=cmd_preview)
    run = actions.add_parser("run", help="send the queued email (the outbox's email lane) until SIGTERM / SIGINT")
    run.add_argument("--config", help="intilery.toml (also INTILERY_CONFIG)")
    run.add_argument("--data-dir", help="the data directory")
    run.set_defaults(run=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """The email lane in this process (``service.py``), the outbox on the profile database."""
    from collector.engage.email import service

    config = load_config(args.config, overrides={"data_dir": args.data_dir}, with_dev_source=False)
    if not config.email.from_:
        print("intilery: [email] from is not set: the sender's address (INTILERY_EMAIL_FROM)", file=sys.stderr)
        return 2
    return service.run(config)


def cmd_preview(args: argparse.Namespace) -> int:
    config = load_config(args.config, with_dev_source=False)
    try:
        template = templates.load(definitions.folder(config), args.name)
    except DefinitionError as exc:
        for problem in exc.problems:
            print(f"intilery: {problem}", file=sys.stderr)
        return 1
    parsed = parse_profile(args.profile)
    if parsed is None:
        print(f"intilery: {args.profile!r} is not {PROFILE_FORM}", file=sys.stderr)
        return 2
    store = _open(config)
    if store is None:
        return 1
    try:
        pid = store.find(*parsed)
        found = variables.of_person(store, pid) if pid else None
    finally:
        store.close()
    if found is None:
        print(f"intilery: no profile holds {args.profile}", file=sys.stderr)
        return 1
    url = None
    if template.kind == "marketing":
        key = tokens.secret(config.email, config.data_dir)
        url = f"{config.email.public_url.rstrip('/') or 'http://' + config.host + ':' + str(config.port)}/u/{tokens.make(key, pid)}"
    found["unsubscribe_url"] = url or ""
    try:
        rendered = templates.render(template, found, strict=True)
    except templates.RenderError as exc:
        print(f"intilery: {exc} (the person has no such value; a send would render it empty)", file=sys.stderr)
        return 1
    to = found["traits"].get("email") or "(no email address)"
    payload = {"id": "preview", "to": str(to), "subject": rendered.subject, "html": rendered.html,
               "text": rendered.text, "created": time.time()}  # fmt: skip
    print(message.build(payload, config.email, url).decode("utf-8", "replace").replace("\r\n", "\n"))
    return 0
