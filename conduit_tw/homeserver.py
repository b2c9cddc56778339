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
from conduit_tw.api.client import versions
from conduit_tw.api.federation import version
from conduit_tw.api.resource import MatrixResource
from conduit_tw.api.router import Router
from conduit_tw.config import Config
from conduit_tw.handlers.auth import Auth
from conduit_tw.handlers.server_keys import ServerKeys
from conduit_tw.logging import get_logger
from conduit_tw.storage.database import open_database
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.stores.tokens import TokenStore

log = get_logger("conduit_tw.homeserver")

#: Modules that mount endpoints: each has C{register(router, hs)}.
API_MODULES: list[Any] = [versions, wellknown, keys, version]


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
        self.tokens = TokenStore(db)
        self.auth = Auth(self.tokens, self.clock_ms)
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
        """Close the database."""
        self.db.close()
