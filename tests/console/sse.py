"""A Server-Sent Events client for the console tests: a real HTTP connection read in a thread.

    with Stream(url + "/console/stream?type=track", token) as stream:
        stream.wait(lambda events: len(stream.data("accepted")) >= 2)

``events`` holds every event received, as ``(event, id, data)`` with ``data`` parsed from JSON.
A stream may be opened without reading (``paused=True``, a small receive buffer) to play a
viewer that never reads, and read later with ``resume``.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from typing import Callable

from helpers import wait_until


class Stream:
    def __init__(self, url: str, token: str | None, *, last_id: str | None = None, paused: bool = False,
                 receive_buffer: int | None = None, headers: dict | None = None) -> None:  # fmt: skip
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.conn.connect()
        if receive_buffer:
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if last_id:
            sent["Last-Event-ID"] = last_id
        self.conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=sent)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.events: list[tuple[str, str, object]] = []
        self.lock = threading.Lock()
        self.closed = False
        self._go = threading.Event()
        if not paused:
            self._go.set()
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self.thread.start()
        else:
            self.body = json.loads(self.response.read() or b"null")

    def resume(self) -> None:
        self._go.set()

    def _read(self) -> None:
        self._go.wait(120)
        event, ident, data = "message", "", []
        try:
            while not self.closed:
                raw = self.response.fp.readline()
                if not raw:
                    return
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        with self.lock:
                            self.events.append((event, ident, json.loads("\n".join(data))))
                    event, ident, data = "message", ident, []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        event = value
                    elif field == "id":
                        ident = value
                    elif field == "data":
                        data.append(value)
        except (OSError, ValueError):
            return

    def of(self, *kinds: str) -> list[tuple[str, str, object]]:
        with self.lock:
            return [e for e in self.events if not kinds or e[0] in kinds]

    def records(self, *kinds: str) -> list[dict]:
        """The stored records (parsed from ``raw``) of the accepted/rejected events received."""
        return [json.loads(data["raw"]) for _, _, data in self.of(*(kinds or ("accepted", "rejected")))]

    def wait(self, check: Callable[[], object], what: str = "stream events", timeout: float = 30) -> object:
        return wait_until(check, timeout=timeout, what=what)

    def close(self) -> None:
        self.closed = True
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
