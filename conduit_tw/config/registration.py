"""Keys of accounts: registration, guests, new users, login."""

from __future__ import annotations

import os
import secrets
from typing import Any

from conduit_tw.config import values
from conduit_tw.config.declare import key, section
from conduit_tw.config.values import ConfigError

OPEN_REGISTRATION_KEY = "yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse"


@section("registration")
class RegistrationKeys:
    """Registration and accounts."""

    allow_registration: bool = key(False, "Let new users register.")
    registration_token: str | None = key(
        None, "Token new users must give to register. An empty string counts as unset."
    )
    registration_token_file: str | None = key(
        None,
        "File holding the registration token (read by the registration handler), an "
        "alternative to `registration_token`.",
    )
    yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse: bool = key(
        False, "Allow registration **without** a token."
    )
    allow_guest_registration: bool = key(
        False, "Allow guest accounts (Element tries to register them automatically)."
    )
    #: Accept the deprecated C{access_token} query parameter (the header wins).
    allow_access_token_query_parameter: bool = key(
        True,
        "Accept the access token in the deprecated `access_token` query parameter as well as "
        "the `Authorization` header (the header wins when both are given). The query token "
        "is never logged.",
    )
    log_guest_registrations: bool = key(False, "Announce guest registrations in the admin room.")
    allow_guests_auto_join_rooms: bool = key(
        False,
        "Join guests to `auto_join_rooms` too (only rooms whose guest access is `can_join`).",
    )
    auto_join_rooms: list[str] = key(
        [],
        "Room IDs (`!...`) or local aliases (`#...`) new users are joined to right after "
        "they register, as if they had joined themselves (join rules apply). A room that "
        "does not exist here or cannot be joined is skipped with a warning in the log; "
        "registration still succeeds.",
        values.list_of(values.ROOM_REF, "room IDs", "list of room IDs or aliases"),
    )
    app_service_config_files: list[str] = key(
        [],
        "Appservice registration YAML files loaded at start (Synapse's key). A file that "
        "cannot be read or is invalid stops start-up. Registrations can also be added "
        "without a restart from the admin room (`appservices register`).",
    )
    appservice_bridges: list[str] = key(
        [],
        "In-process bridges to run, by plugin name (docs/plugins/bridges.md); e.g. "
        "`[\"webhook\"]` for the incoming-webhook bridge. An unknown name stops start-up.",
    )
    forbidden_usernames: list[str] = key(
        [],
        "Regular expressions (as in conduwuit); a username in which any of them is found "
        "cannot be registered (`M_INVALID_USERNAME`). A plain word such as `admin` forbids "
        "every username containing it; `^admin$` forbids exactly `admin`.",
    )
    new_user_displayname_suffix: str = key(
        "", "Text appended (after a space) to the display name of new users."
    )
    enable_lightning_bolt: bool | None = key(
        None,
        "Conduit's older option: `true` makes the suffix `⚡️` when "
        "`new_user_displayname_suffix` is not set.",
    )
    emergency_password: str | None = key(
        None,
        "Password for the server's own admin user, to regain access to the admin room. "
        "Unset it again afterwards.",
    )
    password_hash_memory_kib: int = key(
        19 * 1024,
        "Memory of one argon2id password hash, in KiB (OWASP's 19 MiB by default). Hashes "
        "made with other parameters keep working and are re-hashed at the next login.",
        values.integer(64, 4 * 1024 * 1024),
    )
    password_hash_iterations: int = key(
        2,
        "Passes over that memory per argon2id hash (OWASP: 2 with 19 MiB).",
        values.integer(1, 1000),
    )
    password_hash_concurrency: int = key(
        2,
        "Password hashes computed at once; at most this many times "
        "`password_hash_memory_kib` is in use for them. The others wait in order.",
        values.integer(1, 256),
    )
    password_hash_queue: int = key(
        64,
        "Password hashes that may wait for `password_hash_concurrency`; beyond that, "
        "logins and registrations get 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`.",
        values.integer(0, 100_000),
    )
    registration_shared_secret: str | None = key(
        None,
        "Enables Synapse's shared-secret registration (`/_synapse/admin/v1/register`, used by "
        "Synapse's `register_new_matrix_user` script): whoever knows this secret can create "
        "users and admins, even when `allow_registration` is false.",
    )
    registration_shared_secret_path: str | None = key(
        None,
        "File holding the shared secret (when `registration_shared_secret` is unset); created "
        "with a random secret, mode 0600, when missing (as Synapse does).",
    )
    jwt_secret: str | None = key(
        None,
        "HS256 secret for JWT login (`org.matrix.login.jwt`, or a JWT as `m.login.token` "
        "as Conduit takes it): `sub` names the user (registered if new), `exp` is required.",
    )
    openid_token_ttl: int = key(
        3600,
        "Lifetime, in seconds, of OpenID tokens given to integrations.",
        values.POSITIVE,
    )


def _check_registration_token(config: Any, g: dict[str, Any]) -> None:
    """
    A registration token given as empty or whitespace (key, C{CONDUIT_*} or
    the content of C{registration_token_file}) is refused, never taken as
    "no token" (which would open registration to anyone).
    """
    fix = "set it to a long random secret, or remove it"
    if "registration_token" in g and not (config.registration_token or "").strip():
        raise ConfigError(f"global.registration_token: empty or only whitespace; {fix}")
    path = config.registration_token_file
    if config.registration_token is None and path:
        try:
            with open(path, encoding="utf-8") as f:
                content = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"global.registration_token_file: cannot read {path}: {e}") from None
        if not content.strip():
            raise ConfigError(
                f"global.registration_token_file: {path} is empty or only whitespace; "
                f"write a long random secret into it"
            )


def load_shared_secret(path: str) -> str:
    """
    The shared secret held in C{path}; a new random one is written there
    (mode 0600, atomically) when the file does not exist, as Synapse does.

    @raise ConfigError: the file cannot be read or written, or is empty.
    """
    key = "global.registration_shared_secret_path"
    try:
        if not os.path.exists(path):
            tmp = f"{path}.tmp{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secrets.token_urlsafe(48) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{key}: cannot read or create {path}: {e}") from None
    if not value:
        raise ConfigError(f"{key}: {path} is empty; write a long random secret into it")
    return value


def after_load(config: Any, g: dict[str, Any], notices: list[str]) -> None:
    if "registration_shared_secret" in g and not (config.registration_shared_secret or "").strip():
        raise ConfigError(
            "global.registration_shared_secret: empty or only whitespace; set it to a long "
            "random secret, or remove it"
        )
    if not config.registration_shared_secret and config.registration_shared_secret_path:
        config.registration_shared_secret = load_shared_secret(
            config.registration_shared_secret_path
        )
    if config.allow_registration:
        _check_registration_token(config, g)
    if config.allow_registration and not (
        config.registration_token
        or config.registration_token_file
        or config.yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse
    ):
        raise ConfigError(
            "global.allow_registration: registration is enabled without a registration "
            "token, so anyone could create accounts here (open servers attract spam and "
            "abuse and get defederated). Add one of these two lines to the [global] table:\n"
            '    registration_token = "<a long random secret>"\n'
            f"    {OPEN_REGISTRATION_KEY} = true"
        )
    if "new_user_displayname_suffix" not in g and config.enable_lightning_bolt:
        config.new_user_displayname_suffix = "\u26a1\ufe0f"
