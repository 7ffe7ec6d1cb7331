"""Two app "hosts" (gunicorn, gthread) on 127.0.0.1, and visitors that talk to them.

Each AppServer is a real gunicorn master started from deploy/gunicorn.conf.py and
wsgi.py in production mode, behind an imaginary nginx: visitors send what nginx would
(X-Forwarded-For with their own address, X-Forwarded-Proto: https, the public Host),
and the servers trust one proxy hop (LORCHESTRE_PROXY_COUNT=1).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
HOST = "www.example.test"
ORIGIN = f"https://{HOST}"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def production_env(database_url: str, **settings: str) -> dict[str, str]:
    """A production host's environment behind one nginx: this process's, without any
    LORCHESTRE_ or GUNICORN_ variable of ours, plus ``settings`` (full names)."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LORCHESTRE_", "GUNICORN_"))
    }
    return inherited | {
        "LORCHESTRE_ENV_NAME": "production",
        "LORCHESTRE_SECRET_KEY": secrets.token_urlsafe(48),
        "LORCHESTRE_SQLALCHEMY_DATABASE_URI": database_url,
        "LORCHESTRE_PROXY_COUNT": "1",
        "LORCHESTRE_TRUSTED_HOSTS": json.dumps([HOST]),
        "LORCHESTRE_BASE_URL": ORIGIN,
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
        "GUNICORN_LOGLEVEL": "warning",
        **settings,
    }


def flask(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a `flask --app lorchestre` command as the operator would, in ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "lorchestre", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """One host: a gunicorn master and its workers, in their own process group."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = env | {"GUNICORN_BIND": f"127.0.0.1:{self.port}"}
        self.log_path = log_dir / f"gunicorn-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "deploy/gunicorn.conf.py",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: one signal reaches all
        )
        log.close()

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /healthz answers 200 through this server (or fail with its log)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                if (
                    Visitor("127.0.0.1").request(self.port, "GET", "/healthz").status
                    == 200
                ):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} never became ready:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL master and workers at once: the host dies mid-request."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Quick shutdown (SIGQUIT to the master), SIGKILL to all if it lingers."""
        self.begin_stop()
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def begin_stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Reply:
    """One HTTP answer, as a visitor saw it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    port: int

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def set_cookies(self) -> dict[str, str]:
        """name -> the whole Set-Cookie header, for each cookie this answer sets."""
        return {
            value.split("=", 1)[0]: value
            for key, value in self.headers
            if key.lower() == "set-cookie"
        }

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Visitor:
    """A browser behind nginx: its own address, its own cookie jar."""

    address: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        port: int,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        accept: str = "text/html",
    ) -> Reply:
        headers = {
            "Host": HOST,
            "X-Forwarded-For": self.address,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": HOST,
            "Accept": accept,
            "Referer": f"{ORIGIN}/fr/",
            "Connection": "close",
        }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = ORIGIN
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            reply = Reply(response.status, response.getheaders(), response.read(), port)
        finally:
            connection.close()
        self._keep_cookies(reply)
        return reply

    def _keep_cookies(self, reply: Reply) -> None:
        for name, header in reply.set_cookies().items():
            value = header.split(";", 1)[0].split("=", 1)[1]
            if "Max-Age=0" in header or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def csrf_token(self, port: int, page: str) -> str:
        return csrf_token(self.request(port, "GET", page))


def csrf_token(reply: Reply) -> str:
    """The CSRF token of the form on a page."""
    match = CSRF_INPUT.search(reply.body.decode())
    if reply.status != 200 or not match:
        raise AssertionError(f"no form on that page: {reply.status}")
    return match.group(1)
