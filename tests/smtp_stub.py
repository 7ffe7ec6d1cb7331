"""A tiny real SMTP server on 127.0.0.1 for tests, with the faults a mail server has.

Plain ``socketserver``: aiosmtpd would add a dependency and its own warnings. It
speaks just enough SMTP for smtplib (EHLO, MAIL, RCPT, DATA, QUIT) and records each
message it accepts. Faults, settable while it runs:

- ``drop_connections``: hang up on that many connections before greeting (a
  restarting server);
- ``hang``: accept connections and never answer (a stuck server: the client's
  timeout fires);
- ``drop_mid_data``: read part of the DATA, then hang up without answering (the
  connection died mid-message: the client cannot know, the message was not taken).
"""

from __future__ import annotations

import email
import email.message
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SMTPStub(socketserver.ThreadingTCPServer):
    """A tiny SMTP server on 127.0.0.1 that records each message it accepts."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _SMTPHandler)
        self.received: list[email.message.Message] = []
        self.drop_connections = 0
        self.hang = False
        self.drop_mid_data = False
        self.connections = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def message_ids(self) -> list[str]:
        """Message-ID of every message accepted, in arrival order (duplicates kept)."""
        with self.lock:
            return [str(message["Message-ID"]) for message in self.received]


class _SMTPHandler(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        server: SMTPStub = self.server  # type: ignore[assignment]
        with server.lock:
            server.connections += 1
            if server.drop_connections:
                server.drop_connections -= 1
                return
        if server.hang:
            # Say nothing until the client gives up (or the test ends).
            server.stopping.wait(60)
            return
        self.reply("220 stub ESMTP")
        data: list[bytes] | None = None
        while line := self.rfile.readline():
            if data is not None:
                if server.drop_mid_data and len(data) >= 3:
                    return  # hang up mid-message: nothing answered, nothing kept
                if line.rstrip(b"\r\n") == b".":
                    with server.lock:
                        server.received.append(email.message_from_bytes(b"".join(data)))
                    data = None
                    self.reply("250 queued")
                else:
                    data.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-stub\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                data = []
                self.reply("354 go ahead")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.reply("250 ok")


@contextmanager
def running_smtp_stub(port: int = 0) -> Iterator[SMTPStub]:
    """Start a stub in a thread (on ``port``, or any free one); stop it afterwards."""
    server = SMTPStub(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
