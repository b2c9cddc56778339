"""
The C{twistd conduit} command: options and L{makeService}. The dropin in
C{twisted/plugins/conduit_plugin.py} points here, like twisted.web.tap.
"""

from __future__ import annotations

import os
import sys

from conduit_tw import lazy_tls

# Before anything imports the reactor: the TLS stack loads on first use.
lazy_tls.install()

from twisted.python import usage  # noqa: E402

from conduit_tw.config import Config, ConfigError, load_config  # noqa: E402
from conduit_tw.service import ConduitService, StartupError, make_service  # noqa: E402


class Options(usage.Options):
    """Options of C{twistd conduit}."""

    synopsis = "[--config PATH] [--server-name NAME] [--port PORT]"
    longdesc = (
        "Run the conduit-tw Matrix homeserver. The configuration is read from "
        "--config, else from the file named by CONDUIT_CONFIG, else built-in "
        "defaults (server_name localhost, SQLite under ./conduit_data, "
        "127.0.0.1:6167). CONDUIT_<KEY> environment variables override keys."
    )
    optParameters = [
        ["config", "c", None, "Path to conduit.toml (default: $CONDUIT_CONFIG)."],
        ["server-name", None, None, "Override global.server_name."],
        ["port", "p", None, "Override global.port (listen on this port)."],
        [
            "copy-database-to", None, None,
            "Copy the configured database to TARGET (postgresql://..., lmdb:DIR, "
            "sqlite:DIR), verify it and exit instead of serving "
            "(conduit_tw/copy_database.py).",
        ],
    ]

    config: Config

    def postOptions(self) -> None:
        """Load and validate the configuration now, so errors are clean."""
        overrides: dict[str, object] = {}
        if self["server-name"]:
            overrides["server_name"] = self["server-name"]
        if self["port"]:
            try:
                overrides["port"] = int(self["port"])
            except ValueError:
                raise usage.UsageError(f"--port: expected an integer, got {self['port']!r}")
        path = self["config"] or os.environ.get("CONDUIT_CONFIG") or None
        try:
            self.config = load_config(path, os.environ, overrides)
        except ConfigError as e:
            raise usage.UsageError(f"configuration error: {e}") from None
        except OSError as e:
            raise usage.UsageError(f"cannot read the configuration: {e}") from None
        if self["copy-database-to"]:
            from conduit_tw.copy_database import react_copy

            # Runs the reactor for the copy and exits: no service is made.
            react_copy(self.config, self["copy-database-to"], False, "twistd conduit")


def makeService(options: Options) -> ConduitService:
    """Build the server's service tree from parsed options."""
    try:
        return make_service(options.config)
    except StartupError as e:
        sys.stderr.write(f"conduit: {e}\n")
        raise SystemExit(1)
