"""
What the matrix-nio end-to-end tests share: a real C{twistd -n conduit} on
a free loopback port with a throwaway config and data directory, nio run
in its own asyncio loop in the test thread (the server is another
process, so these are synchronous trial tests), and clients registered on
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any, AsyncIterator

from twisted.trial import unittest

from tests.integration.process import ServerProcess, free_port
from tests.integration.synapse import _insecure_context
from tests.integration.test_twistd import _self_signed

try:
    import nio
    import nio.responses
except ImportError:  # pragma: no cover - nio is a test dependency
    if os.environ.get("CI"):
        # CI installs the test extras: a missing real client is a failure
        # there, never a silent skip.
        raise
    nio = None

#: The C{skip} of a test case that needs matrix-nio, or None when it is there.
NIO_MISSING = None if nio is not None else "matrix-nio is not installed"

#: Config lines for open registration without a token.
OPEN_REGISTRATION = (
    "yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse = true\n"
)


def server_config(data: str, port: int, extra: str = "") -> str:
    """A config with registration on and its rate limits off, plus C{extra} lines."""
    return (
        "[global]\n"
        'server_name = "localhost"\n'
        f'database_path = "{data}"\n'
        'address = "127.0.0.1"\n'
        f"port = {port}\n"
        "allow_registration = true\n"
        "rc_login_per_second = 0\n"
        "rc_registration_per_second = 0\n"
        f"{extra}"
    )


class ServerTestCase(unittest.SynchronousTestCase):
    """Starts servers (stopped at cleanup) and runs nio coroutines."""

    #: The config lines after L{server_config}'s when L{_server} is not told.
    server_extra = OPEN_REGISTRATION + "rc_message_per_second = 0\n"
    #: Seconds a whole nio session may take.
    nio_timeout = 120

    def _server(self, extra: str | None = None) -> ServerProcess:
        workdir = os.path.abspath(self.mktemp())
        port = free_port()
        config = server_config(
            os.path.join(workdir, "data"), port, self.server_extra if extra is None else extra
        )
        server = ServerProcess(workdir, config_text=config)
        server.port = port
        self.addCleanup(server.stop)
        server.start()
        return server

    def _federating_server(self) -> ServerProcess:
        """
        A server named C{localhost:<port>} with a TLS listener (self-signed)
        that federates with other loopback servers: no IP denylist, no
        certificate checks, no notary. Clients must use C{ssl=False}.
        """
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        cert, key = _self_signed(workdir)
        port = free_port()
        extra = (
            self.server_extra
            + "ip_range_denylist = []\n"
            + "allow_invalid_tls_certificates = true\n"
            + "trusted_servers = []\n"
            + f'\n[global.tls]\ncerts = "{cert}"\nkey = "{key}"\n'
        )
        config = server_config(os.path.join(workdir, "data"), port, extra).replace(
            'server_name = "localhost"', f'server_name = "localhost:{port}"'
        )
        server = ServerProcess(workdir, config_text=config, server_name=f"localhost:{port}")
        server.port = port
        server.scheme = "https"
        server.ssl_context = _insecure_context()
        self.addCleanup(server.stop)
        server.start()
        return server

    def _run_async(self, coro: Any) -> Any:
        # nio logs every error response it parses; the errors are expected here.
        nio_log = logging.getLogger("nio")
        level = nio_log.level
        nio_log.setLevel(logging.CRITICAL)
        self.addCleanup(nio_log.setLevel, level)
        return asyncio.run(asyncio.wait_for(coro, self.nio_timeout))

    @contextlib.asynccontextmanager
    async def _registered(self, base_url: str, *names: str) -> AsyncIterator[list[Any]]:
        """
        nio clients registered (password C{password-<name>}) in that order,
        closed on the way out.
        """
        clients = [nio.AsyncClient(base_url, name) for name in names]
        try:
            for client in clients:
                resp = await client.register(client.user, "password-" + client.user)
                self.assertIsInstance(resp, nio.RegisterResponse, resp)
            yield clients
        finally:
            for client in clients:
                await client.close()


class E2EETestCase(ServerTestCase):
    """nio clients with encryption, synced as C{sync_forever} would."""

    def _client(self, base_url: str, user: str, **kwargs: Any) -> Any:
        """An encrypting client with its own store directory (C{kwargs} for nio)."""
        store = os.path.abspath(self.mktemp())
        os.makedirs(store)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        return nio.AsyncClient(base_url, user, store_path=store, config=config, **kwargs)

    async def _register(self, *clients: Any) -> None:
        """Register each client (password C{password-<name>}); its keys are uploaded after."""
        for client in clients:
            resp = await client.register(client.user, "password-" + client.user)
            self.assertIsInstance(resp, nio.RegisterResponse, resp)
            await self._sync(client)
            # Device and one-time keys are on the server now.
            self.assertFalse(client.should_upload_keys)

    async def _sync(self, client: Any, timeout: int = 0) -> Any:
        """One sync plus the key work nio's sync_forever does between syncs."""
        resp = await client.sync(timeout=timeout)
        self.assertIsInstance(resp, nio.SyncResponse, resp)
        if client.should_upload_keys:
            r = await client.keys_upload()
            self.assertIsInstance(r, nio.KeysUploadResponse, r)
        if client.should_query_keys:
            r = await client.keys_query()
            self.assertIsInstance(r, nio.KeysQueryResponse, r)
        if client.should_claim_keys:
            r = await client.keys_claim(client.get_users_for_key_claiming())
            self.assertIsInstance(r, nio.KeysClaimResponse, r)
        await client.send_to_device_messages()
        return resp

    async def _until(self, client: Any, predicate: Any, what: str, rounds: int = 20) -> None:
        """Sync C{client} until C{predicate()} holds."""
        for _ in range(rounds):
            await self._sync(client, timeout=500)
            if predicate():
                return
        self.fail(f"never: {what}")

    async def _receive(self, client: Any, room: str, body: str, rounds: int = 20) -> Any:
        """Sync until C{client} has the decrypted message C{body} in C{room}."""
        for _ in range(rounds):
            resp = await self._sync(client, timeout=1000)
            info = resp.rooms.join.get(room)
            for event in info.timeline.events if info is not None else ():
                if isinstance(event, nio.MegolmEvent):
                    continue  # not (yet) decryptable: keep syncing
                if getattr(event, "body", None) == body:
                    return event
        self.fail(f"{client.user_id}/{client.device_id} never decrypted {body!r}")
