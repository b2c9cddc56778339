"""
Tests for L{conduit_tw.config}: defaults, the seed configs of Conduit and conduwuit,
environment overrides, and the errors and notices an operator sees.
"""

from __future__ import annotations

import os
import re
import shlex
import textwrap
from pathlib import Path

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from conduit_tw.config import (
    NOT_EFFECTIVE_YET,
    KNOWN_KEYS,
    OPEN_REGISTRATION_KEY,
    Config,
    ConfigError,
    is_known_key,
    is_valid_server_name,
    load_config,
    parse_log_filter,
)

REPO = Path(__file__).resolve().parent.parent
SEEDS = Path(os.environ.get("CONDUIT_TW_SEEDS", "/work/shared/seeds"))
DOCS = REPO / "docs" / "configuration.md"
TOKEN_ENV = {"CONDUIT_REGISTRATION_TOKEN": "s3cret-token"}


def _seed(prefix: str) -> str:
    matches = sorted(SEEDS.glob(f"{prefix}_*.txt"))
    if not matches:
        raise FileNotFoundError(f"no seed {prefix}_*.txt in {SEEDS}")
    return matches[0].read_text(encoding="utf-8")


def not_yet(key: str) -> str:
    """The start-up notice for a set key of C{NOT_EFFECTIVE_YET}."""
    return f"global.{key} is set but has no effect yet: {NOT_EFFECTIVE_YET[key]}"


def notices_for(*keys: str) -> list[str]:
    """The notices for set C{keys}, in order: one for each still not effective."""
    return [not_yet(k) for k in keys if k in NOT_EFFECTIVE_YET]


class _Files:
    """Helpers to write configs to temporary files."""

    def write(self: SynchronousTestCase, text: str, name: str = "conduit.toml") -> str:  # type: ignore[misc]
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return str(path)

    def load_text(self, text: str, environ: dict[str, str] | None = None, **kw: object) -> Config:
        return load_config(self.write(text), environ={} if environ is None else environ, **kw)  # type: ignore[attr-defined]


class DefaultsTests(SynchronousTestCase, _Files):
    def test_no_file(self) -> None:
        """Without a file the server serves localhost on 127.0.0.1:6167 with SQLite."""
        c = load_config(None, environ={})
        self.assertEqual(c.server_name, "localhost")
        self.assertEqual(c.database_path, "./conduit_data")
        self.assertEqual(c.database_backend, "sqlite")
        self.assertEqual(c.address, ["127.0.0.1"])
        self.assertEqual(c.port, [6167])
        self.assertEqual(c.listen_addresses(), [("127.0.0.1", 6167)])
        self.assertEqual(c.max_request_size, 20_000_000)
        self.assertEqual(c.default_room_version, "12")
        self.assertFalse(c.allow_registration)
        self.assertFalse(c.allow_guest_registration)
        self.assertTrue(c.allow_federation)
        self.assertTrue(c.allow_encryption)
        self.assertEqual(c.trusted_servers, ["matrix.org"])
        self.assertEqual(c.trusted_proxies, [])
        self.assertIsNone(c.tls)
        self.assertIsNone(c.well_known.client)
        self.assertEqual(c.proxy.mode, "none")
        self.assertEqual(c.log, "info")
        self.assertIs(c.log_level, LogLevel.info)
        self.assertEqual(c.media.path, os.path.join("./conduit_data", "media"))
        self.assertIn("10.0.0.0/8", c.ip_range_denylist)
        self.assertEqual(c.notices, [])
        self.assertEqual(c.unknown_keys, [])

    def test_empty_global(self) -> None:
        """An empty [global] table gives the same defaults as no file."""
        c = self.load_text("[global]\n")
        self.assertEqual(c.listen_addresses(), [("127.0.0.1", 6167)])
        self.assertEqual(c.notices, [])

    def test_config_path_from_env(self) -> None:
        """C{CONDUIT_CONFIG} names the file when no path is given, and is not a key."""
        path = self.write('[global]\nserver_name = "from-file.example"\n')
        c = load_config(None, environ={"CONDUIT_CONFIG": path})
        self.assertEqual(c.server_name, "from-file.example")
        self.assertEqual(c.notices, [])
        # Conduit's container image sets it to "" to mean "no file".
        self.assertEqual(load_config(None, environ={"CONDUIT_CONFIG": ""}).server_name, "localhost")

    def test_missing_file(self) -> None:
        e = self.assertRaises(ConfigError, load_config, "/nonexistent/conduit.toml", {})
        self.assertIn("/nonexistent/conduit.toml", str(e))

    def test_bad_toml(self) -> None:
        path = self.write('[global]\nserver_name = "unterminated\n')
        e = self.assertRaises(ConfigError, load_config, path, {})
        self.assertIn("not valid TOML", str(e))
        self.assertIn("line 2", str(e))


class SeedConfigTests(SynchronousTestCase, _Files):
    """The example configs shipped in Conduit's and conduwuit's docs load here."""

    def uberspace_config(self) -> str:
        """The conduit.toml of the Uberspace guide, placeholders filled in."""
        text = _seed("000")
        start = text.index(" [global]")
        block = text[start : text.index("Setup daemon", start)]
        return textwrap.dedent(block).replace("<username>", "isabell")

    def test_uberspace_refuses_open_registration(self) -> None:
        """
        The guide enables registration without a token: refused, and the message says
        which two lines would fix it.
        """
        e = self.assertRaises(ConfigError, self.load_text, self.uberspace_config())
        self.assertIn("global.allow_registration", str(e))
        self.assertIn('registration_token = "', str(e))
        self.assertIn(f"{OPEN_REGISTRATION_KEY} = true", str(e))

    def test_uberspace_loads(self) -> None:
        c = self.load_text(self.uberspace_config(), environ=dict(TOKEN_ENV))
        self.assertEqual(c.server_name, "isabell.uber.space")
        self.assertEqual(c.database_path, "/home/isabell/conduit_data")
        self.assertEqual(c.port, [6167])
        self.assertEqual(c.address, ["0.0.0.0"])
        self.assertEqual(c.listen_addresses(), [("0.0.0.0", 6167)])
        self.assertEqual(c.max_request_size, 20_000_000)
        self.assertTrue(c.allow_registration)
        self.assertEqual(c.registration_token, "s3cret-token")
        self.assertTrue(c.allow_federation)
        self.assertEqual(c.trusted_servers, ["matrix.org"])
        self.assertEqual(c.proxy.mode, "none")
        self.assertEqual(c.db_cache_capacity_mb, 100.0)
        self.assertEqual(c.unknown_keys, [])
        # The guide sets these two; each gives its notice while it is not effective.
        set_keys = ("allow_federation", "trusted_servers")
        self.assertEqual(c.notices, notices_for(*set_keys))

    def test_uberspace_commented_keys(self) -> None:
        """The keys the guide leaves commented out are recognised too."""
        text = self.uberspace_config()
        text = re.sub(r"(?m)^#(allow_encryption|allow_jaeger|max_concurrent_requests|log|workers)\b", r"\1", text)
        text += f"\n{OPEN_REGISTRATION_KEY} = true\n"
        c = self.load_text(text)
        self.assertFalse(c.allow_encryption)
        self.assertEqual(c.max_concurrent_requests, 100)
        self.assertEqual(c.log_targets, {"state_res": LogLevel.warn, "rocket": None, "_": None, "sled": None})
        self.assertEqual(c.unknown_keys, [])
        self.assertEqual(sorted(c.extra), ["allow_jaeger", "workers"])
        self.assertTrue(any(n.startswith("global.workers: accepted but has no effect") for n in c.notices))

    def conduit_doc_configs(self) -> list[str]:
        """Every complete [global] block of 002 (heredocs and the toml code block)."""
        blocks, current = [], None
        for line in _seed("002").splitlines():
            if line.strip() == "[global]":
                current = [line]
            elif current is not None:
                if line.strip() in ("EOF", "```"):
                    blocks.append("\n".join(current) + "\n")
                    current = None
                else:
                    current.append(line)
        return blocks

    def test_conduit_doc_configs(self) -> None:
        blocks = self.conduit_doc_configs()
        self.assertEqual(len(blocks), 4)
        for block in blocks:
            c = self.load_text(block)
            self.assertEqual(c.unknown_keys, [], block)
        docker, binary, full, tuning = (self.load_text(b) for b in blocks)
        for c in (docker, binary, full):
            self.assertEqual(c.server_name, "example.com")
            self.assertEqual(c.database_backend, "lmdb")
            self.assertTrue(any("'rocksdb' is taken to mean 'lmdb'" in n for n in c.notices))
            self.assertEqual(c.max_request_size, 52_428_800)
        self.assertEqual(docker.well_known.client, "https://matrix.example.com")
        self.assertEqual(docker.well_known.server, "matrix.example.com:443")
        self.assertEqual(full.registration_token, "your-secret-token")
        self.assertEqual(full.address, ["127.0.0.1"])
        self.assertEqual(tuning.max_concurrent_requests, 200)
        self.assertTrue(any(n.startswith("global.cache_capacity: accepted but has no effect") for n in tuning.notices))

    def test_conduit_doc_tls_block(self) -> None:
        """The commented-out [global.tls] of 002, once uncommented."""
        full = self.conduit_doc_configs()[2]
        c = self.load_text(re.sub(r"(?m)^# ?(\[global.tls\]|certs|key)", r"\1", full))
        assert c.tls is not None
        self.assertEqual(c.tls.certs, "/etc/letsencrypt/live/matrix.example.com/fullchain.pem")
        self.assertEqual(c.tls.key, "/etc/letsencrypt/live/matrix.example.com/privkey.pem")
        self.assertFalse(c.tls.dual_protocol)

    def mangled_uberspace_config(self) -> str:
        """003 is the Uberspace guide as scraped text: the config without [global]."""
        text = _seed("003")
        start = text.index("# The server_name is the name")
        block = text[start : text.index("Setup daemon", start)]
        return "[global]\n" + block.replace("<username>", "isabell")

    def test_mangled_uberspace_config(self) -> None:
        """
        The scrape lost values (address = "", trusted_servers = [""]): start-up stops
        naming each damaged key; with them repaired, it loads.
        """
        text = self.mangled_uberspace_config()
        e = self.assertRaises(ConfigError, self.load_text, text, dict(TOKEN_ENV))
        self.assertIn("global.trusted_servers[0]", str(e))
        text = text.replace('trusted_servers = [""]', 'trusted_servers = ["matrix.org"]')
        e = self.assertRaises(ConfigError, self.load_text, text, dict(TOKEN_ENV))
        self.assertIn("global.address", str(e))
        text = text.replace('address = ""', 'address = "0.0.0.0"')
        c = self.load_text(text, dict(TOKEN_ENV))
        self.assertEqual(c.server_name, "isabell")
        self.assertEqual(c.unknown_keys, [])

    def test_blog_post_has_no_config(self) -> None:
        """004 (the beta announcement) contains no config to load."""
        self.assertNotIn("[global]", _seed("004"))

    def conduwuit_example(self, uncomment: bool) -> tuple[str, list[str]]:
        """
        conduwuit's example config (001), optionally with every commented-out key and
        table header uncommented, and the dotted names of all its keys.
        """
        text = _seed("001")
        section = text[text.index("\n[global]") : text.index("Example systemd unit file")]
        lines, keys, table = [], [], "global"
        for line in section.splitlines():
            header = re.match(r"^#?\s*\[(global(?:\.[a-z_]+)*)\]\s*$", line)
            key = re.match(r"^#?\s*([a-z_][a-z0-9_]*)\s*=", line)
            if header:
                table = header.group(1)
            elif key:
                keys.append(f"{table}.{key.group(1)}")
            if uncomment and (header or key):
                line = line.lstrip("# ")
            lines.append(line)
        return "\n".join(lines) + "\n", keys

    def test_conduwuit_example_as_shipped(self) -> None:
        text, _ = self.conduwuit_example(uncomment=False)
        c = self.load_text(text)
        self.assertEqual(c.unknown_keys, [])
        self.assertEqual(c.database_backend, "lmdb")
        self.assertEqual(c.registration_token, "change this token for something specific to your server")
        self.assertEqual(len(c.ip_range_denylist), 19)
        self.assertEqual(c.url_preview_max_spider_size, 384_000)

    def test_conduwuit_example_every_key(self) -> None:
        """All 120 keys of conduwuit's example, commented ones included, are recognised."""
        text, keys = self.conduwuit_example(uncomment=True)
        self.assertGreater(len(keys), 100)
        for dotted in keys:
            self.assertTrue(is_known_key(dotted.removeprefix("global.")), dotted)
        c = self.load_text(text)
        self.assertEqual(c.unknown_keys, [])
        self.assertFalse(any("unknown key" in n for n in c.notices), c.notices)
        self.assertEqual(c.server_name, "your.server.name")
        self.assertEqual(c.unix_socket_path, "/run/conduwuit/conduwuit.sock")
        self.assertEqual(c.unix_socket_mode, 0o660)
        self.assertTrue(c.new_user_displayname_suffix.startswith("\U0001f3f3"))  # the trans pride flag
        self.assertEqual(c.well_known.server, "matrix.example.com:443")
        self.assertIsNone(c.well_known.support_role)
        assert c.tls is not None
        self.assertEqual(c.tls.certs, "/path/to/my/certificate.crt")
        self.assertEqual(len(c.turn_uris), 2)
        self.assertEqual(c.extra["rocksdb_recovery_mode"], 1)
        self.assertIn("sentry", c.extra)

    def test_conduwuit_docker_env(self) -> None:
        """The C{docker run -e CONDUIT_...} example of 001 configures the server alone."""
        environ = {}
        for line in _seed("001").splitlines():
            m = re.match(r"\s*-e (CONDUIT_\w+=.*?)\s*\\?$", line)
            if m:
                name, value = shlex.split(m.group(1))[0].split("=", 1)
                environ[name] = value
        self.assertEqual(len(environ), 7)
        c = load_config(None, environ=environ)
        self.assertEqual(c.server_name, "your.server.name")
        self.assertEqual(c.database_backend, "lmdb")
        self.assertFalse(c.allow_registration)
        self.assertEqual(c.max_request_size, 40_000_000)
        self.assertEqual(c.trusted_servers, ["matrix.org"])
        self.assertEqual(c.log, "warn,ruma_state_res=warn")
        self.assertIs(c.log_level, LogLevel.warn)
        self.assertEqual(c.unknown_keys, [])

    def test_conduwuit_turn_env(self) -> None:
        """The TURN guide's CONDUIT_TURN_URIS / CONDUIT_TURN_SECRET (YAML-quoted in 001)."""
        environ = {
            "CONDUIT_TURN_URIS": '["turn:turn.example.com?transport=udp", "turn:turn.example.com?transport=tcp"]',
            "CONDUIT_TURN_SECRET": "secret key from coturn",
        }
        c = load_config(None, environ=environ)
        self.assertEqual(c.turn_uris, ["turn:turn.example.com?transport=udp", "turn:turn.example.com?transport=tcp"])
        self.assertEqual(c.turn_secret, "secret key from coturn")
        self.assertEqual(c.notices, [])


class EnvironmentTests(SynchronousTestCase, _Files):
    def test_toml_values(self) -> None:
        c = load_config(None, environ={"CONDUIT_PORT": "8008", "CONDUIT_ALLOW_FEDERATION": "false"})
        self.assertEqual(c.port, [8008])
        self.assertFalse(c.allow_federation)
        c = load_config(None, environ={"CONDUIT_PORT": "[1, 2]", "CONDUIT_ADDRESS": '["::1", "127.0.0.1"]'})
        self.assertEqual(c.port, [1, 2])
        self.assertEqual(c.listen_addresses(), [("::1", 1), ("::1", 2), ("127.0.0.1", 1), ("127.0.0.1", 2)])
        c = load_config(None, environ={"CONDUIT_ALLOW_REGISTRATION": "true", **TOKEN_ENV})
        self.assertTrue(c.allow_registration)

    def test_strings(self) -> None:
        """Values that are not TOML are strings; strings keys keep the text as typed."""
        c = load_config(
            None,
            environ={
                "CONDUIT_SERVER_NAME": "example.org",
                "CONDUIT_ADDRESS": "0.0.0.0",
                "CONDUIT_REGISTRATION_TOKEN": "1234",
                "CONDUIT_NEW_USER_DISPLAYNAME_SUFFIX": "true",
                "CONDUIT_DATABASE_PATH": '"/var/lib/conduit"',
            },
        )
        self.assertEqual(c.server_name, "example.org")
        self.assertEqual(c.address, ["0.0.0.0"])
        self.assertEqual(c.registration_token, "1234")
        self.assertEqual(c.new_user_displayname_suffix, "true")
        self.assertEqual(c.database_path, "/var/lib/conduit")

    def test_nesting(self) -> None:
        path = self.write(
            """
            [global.well_known]
            client = "https://file.example.com"
            server = "file.example.com:443"
            """
        )
        environ = {
            "CONDUIT_WELL_KNOWN__CLIENT": "https://env.example.com",
            "CONDUIT_TLS__CERTS": "/etc/cert.pem",
            "CONDUIT_TLS__KEY": "/etc/key.pem",
            "CONDUIT_MEDIA__DIRECTORY_STRUCTURE__DEPTH": "3",
        }
        c = load_config(path, environ=environ)
        self.assertEqual(c.well_known.client, "https://env.example.com")
        self.assertEqual(c.well_known.server, "file.example.com:443")
        assert c.tls is not None
        self.assertEqual((c.tls.certs, c.tls.key), ("/etc/cert.pem", "/etc/key.pem"))
        assert c.media.directory_structure is not None
        self.assertEqual(c.media.directory_structure.depth, 3)
        self.assertEqual(c.notices, notices_for("media"))

    def test_single_underscore_table(self) -> None:
        """C{CONDUIT_WELL_KNOWN_SERVER} also reaches well_known.server."""
        c = load_config(None, environ={"CONDUIT_WELL_KNOWN_SERVER": "m.example.com:443"})
        self.assertEqual(c.well_known.server, "m.example.com:443")

    def test_whole_table(self) -> None:
        c = load_config(
            None,
            environ={
                "CONDUIT_WELL_KNOWN": '{ client = "https://a.example" }',
                "CONDUIT_WELL_KNOWN__SERVER": "a.example:443",
            },
        )
        self.assertEqual((c.well_known.client, c.well_known.server), ("https://a.example", "a.example:443"))

    def test_env_beats_file_and_overrides_beat_env(self) -> None:
        path = self.write('[global]\nserver_name = "file.example"\nport = 1111\n')
        c = load_config(path, environ={"CONDUIT_PORT": "2222"})
        self.assertEqual((c.server_name, c.port), ("file.example", [2222]))
        c = load_config(path, environ={"CONDUIT_PORT": "2222"}, overrides={"port": 3333, "server_name": "cli.example"})
        self.assertEqual((c.server_name, c.port), ("cli.example", [3333]))
        c = load_config(path, environ={}, overrides={"port": None, "well_known.client": "https://x.example"})
        self.assertEqual((c.port, c.well_known.client), ([1111], "https://x.example"))

    def test_unrelated_variables_ignored(self) -> None:
        c = load_config(None, environ={"HOME": "/root", "CONDUITX": "1", "RUST_LOG": "debug", "CONDUIT_": "x"})
        self.assertEqual(c.notices, [])

    def test_unknown_env_key(self) -> None:
        c = load_config(None, environ={"CONDUIT_NOT_A_KEY": "1", "CONDUIT_WELL_KNOWN__CLIENTS": "x"})
        self.assertEqual(c.unknown_keys, ["global.not_a_key", "global.well_known.clients"])
        self.assertEqual(
            c.notices[0],
            "global.not_a_key: unknown key, ignored (check its spelling, "
            "set by the environment variable CONDUIT_NOT_A_KEY)",
        )

    def test_bad_env_value_names_variable(self) -> None:
        e = self.assertRaises(ConfigError, load_config, None, {"CONDUIT_PORT": "abc"})
        self.assertEqual(
            str(e),
            "global.port: expected an integer 1-65535 or a list of them, got 'abc' "
            "(set by the environment variable CONDUIT_PORT)",
        )

    def test_nesting_into_scalar(self) -> None:
        e = self.assertRaises(
            ConfigError, load_config, None, {"CONDUIT_SERVER_NAME__X": "1", "CONDUIT_SERVER_NAME": "a.b"}
        )
        self.assertIn("global.server_name: is not a table", str(e))


class ValidationTests(SynchronousTestCase, _Files):
    def assertConfigError(self, text: str, *fragments: str) -> ConfigError:
        e = self.assertRaises(ConfigError, self.load_text, "[global]\n" + text)
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        return e

    def test_unknown_keys_warned(self) -> None:
        c = self.load_text(
            """
            stray = 1
            [global]
            alow_registration = true
            [global.well_known]
            clinet = "https://x.example"
            """
        )
        self.assertEqual(c.unknown_keys, ["global.alow_registration", "global.well_known.clinet"])
        self.assertIn("stray: unknown key outside the [global] table, ignored (conduit.toml keys belong under [global])", c.notices)
        self.assertIn("global.alow_registration: unknown key, ignored (check its spelling)", c.notices)
        self.assertFalse(c.allow_registration)

    def test_wrong_types(self) -> None:
        e = self.assertConfigError('port = "abc"')
        self.assertEqual(str(e), "global.port: expected an integer 1-65535 or a list of them, got 'abc'")
        self.assertConfigError("port = 70000", "global.port")
        self.assertConfigError("port = []", "global.port")
        self.assertConfigError("port = true", "global.port")
        self.assertConfigError('allow_federation = "yes"', "global.allow_federation: expected true or false")
        self.assertConfigError("max_request_size = 0", "global.max_request_size: expected an integer >= 1")
        self.assertConfigError("max_request_size = 1.5", "global.max_request_size")
        self.assertConfigError("registration_token = 5", "global.registration_token: expected a string")
        self.assertConfigError('address = "localhost"', "global.address: expected an IP address")
        self.assertConfigError('trusted_servers = "matrix.org"', "global.trusted_servers: expected a list")
        self.assertConfigError('trusted_servers = ["ok.example", "bad name"]', "global.trusted_servers[1]")
        self.assertConfigError('server_name = "https://example.com"', "global.server_name: expected a server name")
        self.assertConfigError('default_room_version = "13"', "global.default_room_version")
        self.assertConfigError('ip_range_denylist = ["10.0.0.0/33"]', "global.ip_range_denylist[0]")
        self.assertConfigError('trusted_proxies = ["proxy.local"]', "global.trusted_proxies[0]")
        self.assertConfigError('log = "loud"', "global.log", "'loud'")
        self.assertConfigError('log = "info,state_res=loud"', "global.log")
        self.assertConfigError("conduit_cache_capacity_modifier = 0", "global.conduit_cache_capacity_modifier")
        self.assertConfigError("typing_client_timeout_min_s = 60", "global.typing_client_timeout_min_s")
        self.assertConfigError('turn_uris = ["https://turn.example"]', "global.turn_uris[0]")
        self.assertConfigError('well_known = "x"', "global.well_known: expected a table")
        self.assertConfigError('[global.well_known]\nclient = "matrix.example.com"', "global.well_known.client")
        self.assertConfigError('[global.well_known]\nserver = "a b"', "global.well_known.server")
        self.assertConfigError('[global.tls]\ncerts = "/c.pem"', "global.tls.key: missing")
        self.assertConfigError('[global.media]\nbackend = "s3"', "global.media.backend")
        self.assertConfigError("[global.media.directory_structure]\nlength = 8\ndepth = 8", "global.media.directory_structure")

    def test_accepted_types(self) -> None:
        c = self.load_text(
            """
            [global]
            default_room_version = 10
            db_cache_capacity_mb = 512
            conduit_cache_capacity_modifier = 2.5
            trusted_proxies = ["10.0.0.1", "fd00::/8"]
            """
        )
        self.assertEqual(c.default_room_version, "10")
        self.assertEqual(c.db_cache_capacity_mb, 512.0)
        self.assertEqual(c.conduit_cache_capacity_modifier, 2.5)
        self.assertEqual(c.trusted_proxies, ["10.0.0.1/32", "fd00::/8"])

    def test_rocksdb_alias(self) -> None:
        c = self.load_text('[global]\ndatabase_backend = "rocksdb"\n')
        self.assertEqual(c.database_backend, "lmdb")
        self.assertEqual(len(c.notices), 1)
        self.assertIn("'rocksdb' is taken to mean 'lmdb'", c.notices[0])
        self.assertEqual(self.load_text('[global]\ndatabase_backend = "SQLite"\n').database_backend, "sqlite")
        # Other names are left for the storage layer to look up among its plugins.
        self.assertEqual(self.load_text('[global]\ndatabase_backend = "postgres"\n').database_backend, "postgres")
        self.assertConfigError('database_backend = ""', "global.database_backend")

    def test_no_effect_keys(self) -> None:
        c = self.load_text('[global]\nsentry = true\nrocksdb_some_new_knob = 3\nzstd_compression = true\n')
        self.assertEqual(c.unknown_keys, [])
        self.assertEqual(c.extra, {"sentry": True, "rocksdb_some_new_knob": 3, "zstd_compression": True})
        self.assertEqual(len(c.notices), 3)
        for notice in c.notices:
            self.assertIn("accepted but has no effect in conduit-tw", notice)
            self.assertNotIn("\n", notice)

    def test_open_registration(self) -> None:
        e = self.assertConfigError("allow_registration = true")
        self.assertEqual(
            str(e).splitlines()[1:],
            ['    registration_token = "<a long random secret>"', f"    {OPEN_REGISTRATION_KEY} = true"],
        )
        self.assertConfigError('allow_registration = true\nregistration_token = ""', "registration_token")
        token_file = self.write("abc\n", "token")
        for line in (
            'registration_token = "abc"',
            f'registration_token_file = "{token_file}"',
            f"{OPEN_REGISTRATION_KEY} = true",
        ):
            c = self.load_text(f"[global]\nallow_registration = true\n{line}\n")
            self.assertTrue(c.allow_registration)

    def test_blank_registration_token(self) -> None:
        """
        An empty or whitespace-only token (key, environment, token file) stops
        start-up with one clear line, even next to the open-registration key:
        it must never silently mean "no token".
        """
        on = "[global]\nallow_registration = true\n"
        cases: list[tuple[str, dict[str, str], str]] = []
        for blank in ("", "   ", "\t\n"):
            quoted = blank.replace("\t", "\\t").replace("\n", "\\n")
            cases.append((f'registration_token = "{quoted}"\n', {}, "global.registration_token: empty"))
            cases.append(("", {"CONDUIT_REGISTRATION_TOKEN": blank}, "global.registration_token: empty"))
            path = self.write(blank, "token")
            cases.append(
                (f'registration_token_file = "{path}"\n', {}, "global.registration_token_file: " + path)
            )
        missing = str(Path(self.mktemp()) / "nope")
        cases.append((f'registration_token_file = "{missing}"\n', {}, "cannot read " + missing))
        for extra, environ, fragment in cases:
            for open_key in ("", f"{OPEN_REGISTRATION_KEY} = true\n"):
                e = self.assertRaises(ConfigError, self.load_text, on + extra + open_key, environ)
                self.assertIn(fragment, str(e), (extra, environ))
                self.assertNotIn("\n", str(e))
        # With registration off the token is unused, so nothing is refused.
        self.assertFalse(self.load_text('[global]\nregistration_token = "  "\n').allow_registration)

    def test_lists(self) -> None:
        c = self.load_text('[global]\naddress = ["127.0.0.1", "::1"]\nport = [8008, 8448]\n')
        self.assertEqual(c.address, ["127.0.0.1", "::1"])
        self.assertEqual(c.port, [8008, 8448])
        self.assertEqual(
            c.listen_addresses(),
            [("127.0.0.1", 8008), ("127.0.0.1", 8448), ("::1", 8008), ("::1", 8448)],
        )
        c = self.load_text('[global]\naddress = "::"\nport = 443\n')
        self.assertEqual(c.listen_addresses(), [("::", 443)])

    def test_unix_socket(self) -> None:
        c = self.load_text('[global]\nunix_socket_path = "/run/conduit.sock"\nunix_socket_perms = 660\n')
        self.assertEqual(c.unix_socket_path, "/run/conduit.sock")
        self.assertEqual(c.unix_socket_perms, 660)
        self.assertEqual(c.unix_socket_mode, 0o660)
        self.assertEqual(c.listen_addresses(), [])
        self.assertEqual(c.notices, [])
        c = self.load_text('[global]\nunix_socket_path = "/s"\nunix_socket_perms = "0o600"\naddress = "0.0.0.0"\n')
        self.assertEqual((c.unix_socket_perms, c.unix_socket_mode), (600, 0o600))
        self.assertIn("global.address: ignored, because unix_socket_path is set", c.notices[0])
        self.assertEqual(self.load_text('[global]\nunix_socket_path = "/s"\n').unix_socket_mode, 0o660)
        self.assertConfigError('unix_socket_path = "/s"\nunix_socket_perms = 999', "global.unix_socket_perms")

    def test_tls_and_well_known(self) -> None:
        c = self.load_text(
            """
            [global]
            server_name = "example.com"
            [global.tls]
            certs = "/etc/ssl/fullchain.pem"
            key = "/etc/ssl/privkey.pem"
            dual_protocol = true
            [global.well_known]
            client = "https://matrix.example.com"
            server = "matrix.example.com:443"
            support_email = "admin@example.com"
            support_mxid = "@admin:example.com"
            support_role = "m.role.admin"
            """
        )
        assert c.tls is not None
        self.assertTrue(c.tls.dual_protocol)
        self.assertEqual(c.well_known.support_mxid, "@admin:example.com")
        self.assertEqual(c.well_known.support_role, "m.role.admin")
        self.assertIsNone(c.well_known.support_page)

    def test_turn_table(self) -> None:
        """Conduit's newer [global.turn] table fills the same fields as turn_*."""
        c = self.load_text(
            """
            [global]
            turn_uris = ["turn:old.example"]
            [global.turn]
            uris = ["turns:new.example"]
            username = "u"
            password = "p"
            ttl = 600
            """
        )
        self.assertEqual((c.turn_uris, c.turn_username, c.turn_password, c.turn_ttl), (["turns:new.example"], "u", "p", 600))
        self.assertEqual(c.notices, [])

    def test_proxy(self) -> None:
        self.assertEqual(self.load_text('[global]\nproxy = "none"\n').proxy.mode, "none")
        c = self.load_text('[global.proxy]\nglobal = { url = "socks5h://localhost:9050" }\n')
        self.assertEqual((c.proxy.mode, c.proxy.proxy_for("any.example")), ("global", "socks5h://localhost:9050"))
        c = self.load_text(
            """
            [[global.proxy.by_domain]]
            url = "socks5h://localhost:9050"
            include = ["*.onion", "matrix.myspecial.onion"]
            exclude = ["*.myspecial.onion"]
            """
        )
        self.assertEqual(c.proxy.mode, "by_domain")
        self.assertEqual(c.proxy.proxy_for("abc.onion"), "socks5h://localhost:9050")
        self.assertIsNone(c.proxy.proxy_for("x.myspecial.onion"))
        self.assertIsNone(c.proxy.proxy_for("matrix.org"))
        self.assertConfigError('proxy = "ftp://x"', "global.proxy")
        self.assertConfigError('[global.proxy]\nregional = { url = "http://x" }', "global.proxy")
        self.assertConfigError('[global.proxy]\nglobal = { url = "nope" }', "global.proxy.global.url")

    def test_media(self) -> None:
        c = self.load_text(
            """
            [global]
            database_path = "/var/lib/conduit"
            [global.media]
            directory_structure = {}
            [[global.media.retention]]
            scope = "remote"
            accessed = "30d"
            space = "10GB"
            [[global.media.retention]]
            created = "1h 30m"
            space = "512 MiB"
            """
        )
        self.assertEqual(c.media.path, os.path.join("/var/lib/conduit", "media"))
        self.assertIsNone(c.media.directory_structure)
        remote, default = c.media.retention
        self.assertEqual((remote.scope, remote.accessed, remote.space), ("remote", 30 * 86400.0, 10_000_000_000))
        self.assertEqual((default.scope, default.created, default.space), (None, 5400.0, 512 * 1024**2))
        self.assertConfigError('[[global.media.retention]]\naccessed = "soon"', "global.media.retention[0].accessed")
        self.assertConfigError('[[global.media.retention]]\nscope = "everything"', "global.media.retention[0].scope")

    def test_lightning_bolt(self) -> None:
        self.assertEqual(self.load_text("[global]\nenable_lightning_bolt = true\n").new_user_displayname_suffix, "\u26a1\ufe0f")
        self.assertEqual(self.load_text("[global]\nenable_lightning_bolt = false\n").new_user_displayname_suffix, "")
        c = self.load_text('[global]\nenable_lightning_bolt = true\nnew_user_displayname_suffix = "!"\n')
        self.assertEqual(c.new_user_displayname_suffix, "!")

    def test_conduwuit_insecure_tls_alias(self) -> None:
        key = "allow_invalid_tls_certificates_yes_i_know_what_the_fuck_i_am_doing_with_this_and_i_know_this_is_insecure"
        c = self.load_text(f"[global]\n{key} = true\n")
        self.assertTrue(c.allow_invalid_tls_certificates)
        self.assertEqual(c.unknown_keys, [])
        self.assertIn("NOT verified", c.notices[0])


class ServerNameTests(SynchronousTestCase):
    def test_valid(self) -> None:
        """The examples of the spec's appendices, plus a few more."""
        for name in (
            "matrix.org",
            "matrix.org:8888",
            "1.2.3.4",
            "[1234:5678::abcd]",
            "[1234:5678::abcd]:5678",
            "localhost",
            "localhost:6167",
        ):
            self.assertTrue(is_valid_server_name(name), name)

    def test_invalid(self) -> None:
        for name in (
            "",
            ":8448",
            "matrix.org:",
            "matrix.org:port",
            "matrix.org:123456",
            "matrix.org:0",
            "under_score.example",
            "sp ace.example",
            "[1234:5678::abcd",
            "[not-ipv6]",
            "1234:5678::abcd",
            "300.1.1.1",
            "a" * 256,
            "ex\u00e4mple.com",
        ):
            self.assertFalse(is_valid_server_name(name), name)


class LogFilterTests(SynchronousTestCase):
    def test_levels(self) -> None:
        self.assertEqual(parse_log_filter("info"), (LogLevel.info, {}))
        self.assertEqual(parse_log_filter("debug"), (LogLevel.debug, {}))
        self.assertEqual(parse_log_filter("TRACE"), (LogLevel.debug, {}))
        self.assertEqual(parse_log_filter("warn,state_res=warn"), (LogLevel.warn, {"state_res": LogLevel.warn}))
        self.assertEqual(parse_log_filter("error"), (LogLevel.error, {}))
        self.assertEqual(parse_log_filter("off"), (LogLevel.critical, {}))
        self.assertEqual(parse_log_filter("critical"), (LogLevel.critical, {}))

    def test_targets(self) -> None:
        level, targets = parse_log_filter("warn,state_res=warn,_=off,conduit::api=debug,hyper=trace")
        self.assertIs(level, LogLevel.warn)
        self.assertEqual(
            targets,
            {"state_res": LogLevel.warn, "_": None, "conduit::api": LogLevel.debug, "hyper": LogLevel.debug},
        )
        # Without a bare level the default stays info.
        self.assertEqual(parse_log_filter("state_res=debug")[0], LogLevel.info)

    def test_errors(self) -> None:
        # A bare word that is not a level is refused (tracing would read it as a
        # target), so that "wran" stops start-up instead of hiding every log line.
        for spec in ("loud", "wran", "3", "x=loud", "=info", "info,a b"):
            e = self.assertRaises(ConfigError, parse_log_filter, spec, "global.log")
            self.assertTrue(str(e).startswith("global.log: "), str(e))


class DocsTests(SynchronousTestCase):
    def test_every_key_documented(self) -> None:
        """docs/configuration.md mentions every key (as `key`)."""
        text = DOCS.read_text(encoding="utf-8")
        missing = sorted(
            k for k in KNOWN_KEYS if f"`{k.split('.')[-1]}`" not in text and f"`[global.{k}]`" not in text
        )
        self.assertEqual(missing, [])
        self.assertIn("`rocksdb_*`", text)


class DatabaseOptionsTests(SynchronousTestCase):
    """Durability keys reach the storage backend."""

    def test_sqlite_synchronous(self) -> None:
        import os

        from twisted.internet import reactor

        from conduit_tw.config import ConfigError, load_config
        from conduit_tw.homeserver import HomeServer

        path = os.path.abspath(self.mktemp())
        config = load_config(None, {}, {"database_path": path, "sqlite_synchronous": "normal"})
        self.assertEqual(config.database_options()["sqlite_synchronous"], "normal")
        hs = HomeServer(config, reactor)
        self.addCleanup(hs.close)
        [(level,)] = hs.db._conn.execute("PRAGMA synchronous").fetchall()
        self.assertEqual(level, 1)  # NORMAL
        self.assertRaises(
            ConfigError, load_config, None, {}, {"sqlite_synchronous": "off"}
        )
