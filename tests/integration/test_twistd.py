"""
The real command line: `twistd -n conduit`, `twistd -ny conduit.tac`, the
built-in defaults, env overrides, graceful shutdown, and a plain (non
editable) `pip install .`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import signal
import subprocess
import sys
import time
import zipfile
from typing import Any

from twisted.trial import unittest

from tests.integration.process import TWISTD, ServerProcess, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(os.path.dirname(ROOT), "shared", "seeds")


def _server(test: unittest.TestCase, **kw) -> ServerProcess:
    server = ServerProcess(test.mktemp(), **kw)
    test.addCleanup(server.stop)
    return server


class TwistdPluginTests(unittest.TestCase):
    """`twistd -n conduit` as operators run it."""

    def test_config_file(self) -> None:
        server = _server(self)
        server.start()
        status, body = server.get("/_matrix/client/versions")
        self.assertEqual(status, 200)
        self.assertIn("versions", body)
        status, body = server.get("/_matrix/key/v2/server")
        self.assertEqual(body["server_name"], "localhost")
        # SIGTERM: clean, prompt exit.
        began = time.monotonic()
        # twistd re-raises the signal it stopped on, as daemons should.
        self.assertIn(server.stop(signal.SIGTERM), (0, -signal.SIGTERM), server.log())
        self.assertIn("Server Shut Down", server.log())
        self.assertLess(time.monotonic() - began, 10)
        self.assertTrue(os.path.isdir(server.data))

    def test_key_survives_restart(self) -> None:
        server = _server(self)
        server.start()
        _, first = server.get("/_matrix/key/v2/server")
        server.stop()
        server.start()
        _, second = server.get("/_matrix/key/v2/server")
        self.assertEqual(first["verify_keys"], second["verify_keys"])

    def test_builtin_defaults_and_port_option(self) -> None:
        """No config at all: SQLite under ./conduit_data of the working dir."""
        server = _server(self, args=None)
        port = free_port()
        server.port = port
        server.args = ["--port", str(port)]
        server.start()
        _, keys = server.get("/_matrix/key/v2/server")
        self.assertEqual(keys["server_name"], "localhost")
        self.assertTrue(os.path.isdir(os.path.join(server.workdir, "conduit_data")))

    def test_server_name_option(self) -> None:
        server = _server(self)
        server.args += ["--server-name", "example.org"]
        server.start()
        _, keys = server.get("/_matrix/key/v2/server")
        self.assertEqual(keys["server_name"], "example.org")

    def test_conduit_config_env_and_overrides(self) -> None:
        server = _server(self)
        port = free_port()
        server.env["CONDUIT_CONFIG"] = server.config_path
        server.env["CONDUIT_PORT"] = str(port)
        server.env["CONDUIT_WELL_KNOWN__CLIENT"] = "https://matrix.example.org"
        server.args = []
        server.port = port
        server.start()
        status, body = server.get("/.well-known/matrix/client")
        self.assertEqual(
            (status, body), (200, {"m.homeserver": {"base_url": "https://matrix.example.org"}})
        )

    def test_tac(self) -> None:
        server = _server(self)
        server.env["CONDUIT_CONFIG"] = server.config_path
        server.start(cmd=TWISTD + ["-ny", os.path.join(ROOT, "conduit.tac"), "--pidfile="])
        status, _ = server.get("/_matrix/federation/v1/version")
        self.assertEqual(status, 200)

    def test_help_lists_options(self) -> None:
        out = subprocess.run(
            TWISTD + ["conduit", "--help"], capture_output=True, text=True, timeout=30
        ).stdout
        for option in ("--config", "--server-name", "--port"):
            self.assertIn(option, out)

    def test_bad_config_stops_with_key_named(self) -> None:
        server = _server(self, config_text='[global]\nport = "not a port"\n')
        proc = subprocess.run(
            TWISTD + ["-n", "--pidfile=", "conduit", "--config", server.config_path],
            capture_output=True, text=True, timeout=30, cwd=server.workdir, env=server.env,
        )
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("port", proc.stdout + proc.stderr)
        self.assertNotIn("Traceback", proc.stdout + proc.stderr)

    def test_unknown_backend_lists_available(self) -> None:
        server = _server(self)
        with open(server.config_path, "a") as f:
            f.write('database_backend = "nosuchdb"\n')
        proc = subprocess.run(
            TWISTD + ["-n", "--pidfile=", "conduit", "--config", server.config_path],
            capture_output=True, text=True, timeout=30, cwd=server.workdir, env=server.env,
        )
        output = proc.stdout + proc.stderr
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("nosuchdb", output)
        self.assertIn("sqlite", output)
        self.assertIn("lmdb", output)

    def test_lmdb_backend(self) -> None:
        server = _server(self)
        with open(server.config_path, "a") as f:
            f.write('database_backend = "rocksdb"\n')
        server.start()
        self.assertEqual(server.get("/_matrix/client/versions")[0], 200)
        self.assertIn(server.stop(), (0, -signal.SIGTERM))

    def test_unix_socket(self) -> None:
        # AF_UNIX paths are limited to ~107 bytes: keep the socket short.
        workdir = tempfile.mkdtemp(prefix="ctw")
        self.addCleanup(shutil.rmtree, workdir, True)
        sock = os.path.join(workdir, "c.sock")
        server = _server(
            self,
            config_text=(
                f'[global]\nserver_name = "localhost"\n'
                f'database_path = "{os.path.abspath(workdir)}/data"\n'
                f'unix_socket_path = "{sock}"\nunix_socket_perms = 660\n'
            ),
        )
        server.proc = subprocess.Popen(
            TWISTD + ["-n", "--pidfile=", "conduit", "--config", server.config_path],
            cwd=server.workdir, env=server.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        server._log = open(os.devnull, "wb")
        deadline = time.monotonic() + 20
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(sock))
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o660)
        out = subprocess.run(
            ["curl", "-s", "--unix-socket", sock, "http://localhost/_matrix/client/versions"],
            capture_output=True, text=True, timeout=10,
        ).stdout
        self.assertIn("versions", out)


class SeedConfigTests(unittest.TestCase):
    """The Conduit example configs from shared/seeds start unchanged."""

    def test_conduit_example_config_starts(self) -> None:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        # Conduit's documented example (seeds 002), placeholders filled.
        text = (
            "[global]\n"
            'server_name = "example.com"\n'
            f'database_path = "{workdir}/data"\n'
            'database_backend = "rocksdb"\n'
            "port = 6167\n"
            "max_request_size = 52_428_800\n"
            "allow_registration = false\n"
            "allow_federation = true\n"
            'trusted_servers = ["matrix.org"]\n'
            "\n[global.well_known]\n"
            'client = "https://matrix.example.com"\n'
            'server = "matrix.example.com:443"\n'
        )
        server = _server(self, config_text=text)
        server.env["CONDUIT_PORT"] = str(server.port)
        server.env["CONDUIT_ADDRESS"] = "127.0.0.1"
        server.start()
        status, body = server.get("/.well-known/matrix/server")
        self.assertEqual(body, {"m.server": "matrix.example.com:443"})


class PipInstallTests(unittest.TestCase):
    """A plain `pip install .` (a wheel) gives a working `twistd conduit`."""

    def test_wheel_install(self) -> None:
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "-q", "-w", tmp, ROOT],
            check=True, timeout=300, capture_output=True,
        )
        [wheel] = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        names = zipfile.ZipFile(os.path.join(tmp, wheel)).namelist()
        self.assertIn("twisted/plugins/conduit_plugin.py", names)
        self.assertIn("twisted/plugins/conduit_backends.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        # A fresh environment with this project's dependencies available
        # through a .pth, but not the checkout itself.
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        site = subprocess.run(
            [os.path.join(venv, "bin", "python"), "-c",
             "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        deps = subprocess.run(
            [sys.executable, "-c", "import twisted, os; print(os.path.dirname(os.path.dirname(twisted.__file__)))"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        with open(os.path.join(site, "deps.pth"), "w") as f:
            f.write(deps + "\n")
        with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
            z.extractall(site)
        python = os.path.join(venv, "bin", "python")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        where = subprocess.run(
            [python, "-c", "import conduit_tw; print(conduit_tw.__file__)"],
            check=True, capture_output=True, text=True, cwd=tmp, env=env,
        ).stdout
        self.assertTrue(where.startswith(site), where)
        server = _server(self)
        server.env.pop("PYTHONPATH", None)
        server.start(cmd=[python, "-c", "from twisted.scripts.twistd import run; run()",
                          "-n", "--pidfile=", "conduit", "--config", server.config_path])
        self.assertEqual(server.get("/_matrix/client/versions")[0], 200)


def _self_signed(directory: str) -> tuple[str, str]:
    """Write a self-signed certificate and key for 127.0.0.1; return paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
    return cert_path, key_path


def tls_server(case: unittest.TestCase, extra: str = "") -> tuple[ServerProcess, str]:
    """A twistd server with a [global.tls] listener (plus C{extra} lines); its cert."""
    server = _server(case)
    cert, key = _self_signed(server.workdir)
    with open(server.config_path, "a") as f:
        f.write(f'\n[global.tls]\ncerts = "{cert}"\nkey = "{key}"\n{extra}')
    server.proc = subprocess.Popen(
        TWISTD + ["-n", "--pidfile=", "conduit", "--config", server.config_path],
        cwd=server.workdir, env=server.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server._log = open(os.devnull, "wb")
    return server, cert


class ListenerTests(unittest.TestCase):
    """TLS listener from [global.tls]; a port in use fails start-up cleanly."""

    def _tls_server(self, extra: str = "") -> tuple[Any, str]:
        return tls_server(self, extra)

    @staticmethod
    def _versions(server: Any, scheme: str, cert: str) -> bytes | None:
        """GET /versions over C{scheme}, retried for 20 s while the server starts."""
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=cert) if scheme == "https" else None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"{scheme}://127.0.0.1:{server.port}/_matrix/client/versions",
                    context=context, timeout=2,
                ) as r:
                    return r.read()
            except OSError:
                time.sleep(0.05)
        return None

    def test_tls(self) -> None:
        server, cert = self._tls_server()
        body = self._versions(server, "https", cert)
        self.assertIsNotNone(body)
        self.assertIn(b"versions", body)

    def test_dual_protocol(self) -> None:
        """With dual_protocol, HTTPS and plain HTTP are served on the same port."""
        server, cert = self._tls_server("dual_protocol = true\n")
        for scheme in ("https", "http", "https"):
            body = self._versions(server, scheme, cert)
            self.assertIsNotNone(body, scheme)
            self.assertIn(b"v1.1", body)

    def test_port_in_use(self) -> None:
        import socket

        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        self.addCleanup(blocker.close)
        server = _server(self)
        with open(server.config_path, "a") as f:
            f.write("")
        server.env["CONDUIT_PORT"] = str(blocker.getsockname()[1])
        proc = subprocess.run(
            TWISTD + ["-n", "--pidfile=", "conduit", "--config", server.config_path],
            capture_output=True, text=True, timeout=30, cwd=server.workdir, env=server.env,
        )
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("Start-up failed", proc.stdout + proc.stderr)
