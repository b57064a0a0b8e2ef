"""The people's end of the alerting tests: an SMTP mailbox (aiosmtpd) and a webhook receiver.

Both run on loopback in the test process, answer like the real thing, and
record what they got. The webhook receiver can hold its answer (``release``)
so a test can stop the gateway while a POST is open.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.simproc import free_port


@contextmanager
def smtp_on_loopback(handler: Any, **options: Any) -> Iterator[int]:
    """An aiosmtpd server with ``handler`` on a free loopback port; yields the port."""
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port, **options)
    ctl.start()
    try:
        yield port
    finally:
        ctl.stop()


@dataclass
class Mailbox:
    got: list[tuple[list[str], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content or b""
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        with self.lock:
            self.got.append((list(envelope.rcpt_tos), str(message_from_bytes(data)["Subject"])))
        return "250 OK"

    def to(self, who: str) -> list[str]:
        with self.lock:
            return [subj for rcpts, subj in self.got if who in rcpts]


class WebhookReceiver:
    """A local HTTP receiver standing in for a group-chat robot (plain http.server).

    ``posts`` are the JSON bodies, ``headers`` each request's headers;
    ``entered`` is set by every POST, which is answered once ``release`` is set
    (it is, unless a test clears it).
    """

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(json.loads(body))
                outer.headers.append(dict(self.headers.items()))
                outer.entered.set()
                outer.release.wait(30)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"errcode":0}')
                except OSError:
                    pass  # the gateway cut the connection

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
