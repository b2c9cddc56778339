"""
Load and validate Conduit's C{conduit.toml} plus C{CONDUIT_*} environment variables.

A file written for Conduit (or conduwuit) works here unchanged: every key of their
example configs is either a typed field of L{Config} or accepted with a one-line notice
saying it has no effect in conduit-tw. Some typed fields are validated but not used by
the server yet (L{NOT_EFFECTIVE_YET}); setting one logs a notice saying so. Unknown keys
are reported (never silently dropped) and wrong values stop start-up with a
L{ConfigError} naming the key.

Precedence, lowest to highest: built-in defaults, the file's C{[global]} table,
C{CONDUIT_<KEY>} environment variables (C{__} separates nested tables), then
C{overrides} (the command line). The only I/O here is reading the config file; the
caller logs L{Config.notices}.

Every key is declared once, in the module of its concern (L{server}, L{registration},
L{rooms}, L{federation}, L{network}, L{presence}, L{voip}, L{media}, L{limits}; the
machinery is L{declare}); L{Config}, validation, the environment, the notices,
L{KNOWN_KEYS} and the key tables of docs/configuration.md (L{doc}) derive from it.
"""

from conduit_tw.config.declare import FEDERATION, MEDIA
from conduit_tw.config.env import ENV_CONFIG_PATH, ENV_PREFIX
from conduit_tw.config.federation import (
    DEFAULT_IP_RANGE_DENYLIST,
    ProxyConfig,
    ProxyRule,
    WellKnownConfig,
)
from conduit_tw.config.load import load_config
from conduit_tw.config.media import MediaConfig, MediaDirectoryStructure, MediaRetention
from conduit_tw.config.registration import OPEN_REGISTRATION_KEY
from conduit_tw.config.schema import (
    KNOWN_KEYS,
    NO_EFFECT_KEYS,
    NOT_EFFECTIVE_YET,
    Config,
    is_known_key,
)
from conduit_tw.config.schema import NO_EFFECT_PREFIXES_TUPLE as NO_EFFECT_PREFIXES
from conduit_tw.config.server import TlsConfig, parse_log_filter
from conduit_tw.config.values import ConfigError, is_valid_server_name

__all__ = [
    "ConfigError",
    "Config",
    "TlsConfig",
    "WellKnownConfig",
    "ProxyConfig",
    "ProxyRule",
    "MediaConfig",
    "MediaDirectoryStructure",
    "MediaRetention",
    "load_config",
    "is_valid_server_name",
    "parse_log_filter",
    "OPEN_REGISTRATION_KEY",
    "DEFAULT_IP_RANGE_DENYLIST",
    "ENV_PREFIX",
    "ENV_CONFIG_PATH",
    "FEDERATION",
    "MEDIA",
    "KNOWN_KEYS",
    "NO_EFFECT_KEYS",
    "NO_EFFECT_PREFIXES",
    "NOT_EFFECTIVE_YET",
    "is_known_key",
]
