"""
Integration helper: run the real C{twistd -n conduit} in a subprocess on a
free loopback port with a temporary config and data directory, wait for
C{/_matrix/client/versions}, and always stop it.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

TWISTD = [os.path.join(os.path.dirname(sys.executable), "twistd")]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """
    One running server. Use C{start()} then C{stop()} (register C{stop} as
    a cleanup before anything can fail).
    """

    #: C{https} for a TLS listener, with the context to check it with.
    scheme = "http"
    ssl_context: ssl.SSLContext | None = None

    def __init__(
        self,
        workdir: str,
        config_text: str | None = None,
        server_name: str = "localhost",
        extra_env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_port()
        self.server_name = server_name
        self.data = os.path.join(self.workdir, "data")
        if config_text is None:
            config_text = (
                "[global]\n"
                f'server_name = "{server_name}"\n'
                f'database_path = "{self.data}"\n'
                'address = "127.0.0.1"\n'
                f"port = {self.port}\n"
            )
        self.config_path = os.path.join(self.workdir, "conduit.toml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUIT_")}
        self.env.update(extra_env or {})
        self.args = args if args is not None else ["--config", self.config_path]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.workdir, "server.log")

    @property
    def base_url(self) -> str:
        """C{http://127.0.0.1:<port>} (C{https} for a TLS listener)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, cmd: list[str] | None = None) -> float:
        """
        Start the server and wait until /versions answers.

        @return: seconds from spawning to the first answer.
        @raise RuntimeError: when it exits or does not answer in time
            (the server's log is included).
        """
        if cmd is None:
            cmd = TWISTD + ["-n", "--pidfile=", "conduit"] + self.args
        began = time.monotonic()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(
                    self.base_url + "/_matrix/client/versions", timeout=1,
                    context=self.ssl_context,
                ) as r:
                    if r.status == 200:
                        return time.monotonic() - began
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.02)
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """What the server printed so far."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after C{timeout})."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.stop(signal.SIGKILL)

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        """A blocking GET returning (status, parsed JSON)."""
        return self.call("GET", path, None, token)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """A blocking request returning (status, parsed JSON)."""
        return call(self.base_url + path, method, body, token, self.ssl_context)


def call(
    url: str, method: str = "GET", body: Any = None, token: str | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    """A blocking JSON request returning (status, parsed JSON)."""
    import json

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
