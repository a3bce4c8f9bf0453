"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the tests: keeps what it accepts, parsed by the
standard library; answers a recipient or a message with a code when told to."""

from __future__ import annotations

import email
import socket
from email import policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    def __init__(self) -> None:
        self.received: list = []  # (envelope recipients, parsed message, raw bytes)
        self.rcpt_answers: dict[str, list[str]] = {}  # address -> answers to give, in turn ("" : accept)
        self.data_answers: list[str] = []  # answers to DATA, in turn (after the message was read)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answers = self.rcpt_answers.get(address)
        if answers:
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if answer:
                return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        self.received.append((list(envelope.rcpt_tos), email.message_from_bytes(raw, policy=policy.default), raw))
        answer = self.data_answers.pop(0) if self.data_answers else ""
        if answer:
            return answer
        return "250 Message accepted"


class Relay:
    def __init__(self, port: int | None = None) -> None:
        self.handler = Handler()
        self.port = port or free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "Relay":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def received(self) -> list:
        return self.handler.received
