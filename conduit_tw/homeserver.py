"""
L{HomeServer}: the one object that owns the config, the database, the
stores and the handlers, wired explicitly in its constructor (no globals,
no getter per component). The HTTP layer receives it and calls handlers.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

from conduit_tw.api import keys, wellknown
from conduit_tw.api.client import account as account_api
from conduit_tw.api.client import devices as devices_api
from conduit_tw.api.client import login as login_api
from conduit_tw.api.client import profile as profile_api
from conduit_tw.api.client import register as register_api
from conduit_tw.api.client import versions
from conduit_tw.api.federation import version
from conduit_tw.api.resource import MatrixResource
from conduit_tw.api.router import Router
from conduit_tw.config import Config
from conduit_tw.handlers.account import AccountHandler
from conduit_tw.handlers.auth import Auth
from conduit_tw.handlers.devices import DeviceHandler
from conduit_tw.handlers.login import LoginHandler
from conduit_tw.handlers.passwords import Passwords
from conduit_tw.handlers.profile import ProfileHandler
from conduit_tw.handlers.ratelimit import RateLimits
from conduit_tw.handlers.registration import RegistrationHandler
from conduit_tw.handlers.uia import PASSWORD, UIA
from conduit_tw.handlers.server_keys import ServerKeys
from conduit_tw.logging import get_logger
from conduit_tw.notifier import Notifier
from conduit_tw.storage.database import open_database
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.stores.devices import DeviceStore
from conduit_tw.storage.stores.tokens import TokenStore
from conduit_tw.storage.stores.users import UserStore

log = get_logger("conduit_tw.homeserver")

#: Modules that mount endpoints: each has C{register(router, hs)}.
API_MODULES: list[Any] = [
    versions, wellknown, keys, version,
    register_api, login_api, account_api, devices_api, profile_api,
]


class HomeServer:
    """
    The server's components.

    @ivar config: the loaded configuration.
    @ivar reactor: the reactor (or a clock in tests) used for time.
    @ivar db: the key-value database.
    """

    def __init__(
        self,
        config: Config,
        reactor: IReactorTime,
        db: IKeyValueDatabase | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.server_name = config.server_name
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        if db is None:
            db = open_database(config.database_backend, config.database_path)
        self.db = db
        self.globals = GlobalsStore(db)
        self.notifier = Notifier(reactor)
        self.tokens = TokenStore(db)
        self.auth = Auth(self.tokens, self.clock_ms)
        # -- accounts and sessions (handlers/{uia,registration,login,...})
        self.users = UserStore(db)
        self.device_store = DeviceStore(db)
        self.ratelimit = RateLimits(config, self.users, self.clock_ms)
        self.passwords = Passwords(reactor)
        self.uia = UIA(self.clock_ms)
        self.devices = DeviceHandler(
            self.device_store, self.tokens, self.clock_ms, config.allow_device_name_federation
        )
        self.auth.seen = self.devices.seen
        self.login = LoginHandler(
            self.server_name, self.users, self.tokens, self.devices, self.passwords,
            self.clock_ms, wellknown.client_document(self),
        )
        self.login.failed_login_limiter = self.ratelimit.failed_login
        self.uia.checkers[PASSWORD] = self.login.password_stage
        self.registration = RegistrationHandler(
            config, self.users, self.tokens, self.devices, self.passwords, self.uia,
            self.login, self.clock_ms,
        )
        self.profile = ProfileHandler(self.server_name, self.users)
        self.account = AccountHandler(self.users, self.devices, self.passwords, self.uia)
        self.server_keys: ServerKeys
        self.router = Router()
        self.resource = MatrixResource(self.router)

    async def setup(self) -> None:
        """Load (or create) persistent state and mount the API."""
        signing_key = await self.globals.get_or_create_signing_key()
        self.server_keys = ServerKeys(self.server_name, signing_key, self.clock_ms)
        for module in API_MODULES:
            module.register(self.router, self)

    def close(self) -> None:
        """Write pending last-seen data and close the database."""
        from twisted.internet.defer import Deferred

        Deferred.fromCoroutine(self.devices.flush()).addErrback(
            lambda f: log.failure("Flushing last-seen data failed", f)
        )
        self.db.close()
