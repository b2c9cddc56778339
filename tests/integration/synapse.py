"""
Integration helper: a real Synapse on loopback for interop tests.

Synapse lives in its own venv, C{.venv-synapse} at the top of the checkout,
installed by C{make synapse} (C{make test} depends on it; the version is
pinned in the Makefile). L{SynapseProcess} writes a homeserver.yaml into a
temporary directory - server name C{localhost:<free port>}, one TLS
listener on 127.0.0.1 serving the client, federation and key APIs with a
self-signed certificate, certificate checks off for federation, loopback
allowed as a federation destination, no trusted key servers (keys are
fetched from the servers themselves), SQLite, registration only through
the shared-secret admin API - starts C{python -m synapse.app.homeserver}
as a subprocess and waits for C{/_matrix/client/versions}. Users are made
with the shared-secret admin API (C{POST /_synapse/admin/v1/register}).

Tests call L{start_synapse}, which registers the stop as a cleanup. When
the venv is missing the test is skipped, except under CI (C{CI} set) where
it fails: CI runs C{make test}, which installs it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import ssl
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.integration.process import ServerProcess
from tests.integration.test_twistd import _self_signed

ROOT = Path(__file__).resolve().parent.parent.parent
#: The interpreter of Synapse's venv (C{SYNAPSE_PYTHON} overrides it).
SYNAPSE_PYTHON = os.environ.get("SYNAPSE_PYTHON") or str(ROOT / ".venv-synapse" / "bin" / "python")
#: Synapse creates its SQLite schema on first start: allow for a slow machine.
START_TIMEOUT = 90.0


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def homeserver_yaml(workdir: str, server_name: str, port: int, cert: str, key: str, secret: str) -> str:
    """The homeserver.yaml of a loopback test Synapse (see the module docstring)."""
    d = workdir
    return f"""\
server_name: "{server_name}"
pid_file: "{d}/homeserver.pid"
public_baseurl: "https://{server_name}/"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [client, federation, keys]
        compress: false
tls_certificate_path: "{cert}"
tls_private_key_path: "{key}"
federation_verify_certificates: false
ip_range_whitelist: ["127.0.0.1", "::1"]
trusted_key_servers: []
suppress_key_server_warning: true
report_stats: false
enable_metrics: false
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
media_store_path: "{d}/media_store"
signing_key_path: "{d}/signing.key"
log_config: "{d}/log.yaml"
enable_registration: false
registration_shared_secret: "{secret}"
macaroon_secret_key: "{secrets.token_hex(16)}"
form_secret: "{secrets.token_hex(16)}"
require_auth_for_profile_requests: false
allow_public_rooms_over_federation: true
room_list_publication_rules: [{{action: allow}}]
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_login:
  address: {{per_second: 1000, burst_count: 1000}}
  account: {{per_second: 1000, burst_count: 1000}}
rc_joins:
  local: {{per_second: 1000, burst_count: 1000}}
  remote: {{per_second: 1000, burst_count: 1000}}
"""


LOG_YAML = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    formatter: precise
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [console]
disable_existing_loggers: false
"""


class SynapseProcess(ServerProcess):
    """One Synapse (see the module docstring); C{start()}, then C{stop()}."""

    scheme = "https"
    ssl_context = _insecure_context()

    def __init__(self, workdir: str) -> None:
        super().__init__(workdir, config_text="")
        self.server_name = f"localhost:{self.port}"
        self.secret = secrets.token_hex(16)
        cert, key = _self_signed(self.workdir)
        self.config_path = os.path.join(self.workdir, "homeserver.yaml")
        with open(self.config_path, "w") as f:
            f.write(homeserver_yaml(self.workdir, self.server_name, self.port, cert, key, self.secret))
        with open(os.path.join(self.workdir, "log.yaml"), "w") as f:
            f.write(LOG_YAML)
        _write_signing_key(os.path.join(self.workdir, "signing.key"))
        self.env.pop("PYTHONPATH", None)

    def start(self, timeout: float = START_TIMEOUT, cmd: list[str] | None = None) -> float:
        """Start Synapse and wait until its client API answers."""
        return super().start(
            timeout, cmd or [SYNAPSE_PYTHON, "-m", "synapse.app.homeserver", "-c", self.config_path]
        )

    def register(self, username: str, password: str = "secret pw", admin: bool = False) -> dict[str, Any]:
        """
        A new user through the shared-secret admin API: C{{"user_id",
        "access_token", ...}} (blocking; call it in a thread when the
        reactor must keep serving).
        """
        code, body = self.get("/_synapse/admin/v1/register")
        if code != 200:
            raise RuntimeError(f"register nonce: {code} {body}")
        nonce = body["nonce"]
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join(
            [nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin"]
        ))
        code, body = self.call("POST", "/_synapse/admin/v1/register", {
            "nonce": nonce, "username": username, "password": password, "admin": admin,
            "mac": mac.hexdigest(),
        })
        if code != 200:
            raise RuntimeError(f"register {username}: {code} {body}")
        return body


def _write_signing_key(path: str) -> None:
    """A Synapse signing key file (C{ed25519 <version> <unpadded base64 seed>})."""
    from signedjson.key import generate_signing_key, write_signing_keys

    with open(path, "w") as f:
        write_signing_keys(f, [generate_signing_key("a_" + secrets.token_hex(2))])


def synapse_installed() -> bool:
    """Whether Synapse's venv is there."""
    return os.path.exists(SYNAPSE_PYTHON)


def start_synapse(case: unittest.TestCase) -> SynapseProcess:
    """
    Start a Synapse for C{case} (stopped by a cleanup, its log attached to
    a failure). Skips the test when Synapse is not installed, except under
    CI, where that is an error.
    """
    if not synapse_installed():
        message = f"Synapse is not installed ({SYNAPSE_PYTHON}); run `make synapse`"
        if os.environ.get("CI"):
            raise AssertionError(message)
        raise unittest.SkipTest(message)
    process = SynapseProcess(case.mktemp())
    case.addCleanup(process.stop)
    process.start()
    return process
