"""
Integration helpers for federation tests: one of our servers in this
process, named C{localhost:<free port>}, serving the client and federation
APIs over TLS on 127.0.0.1 (self-signed certificate, certificate checks
off, loopback allowed), as test federations run; and blocking client-API
calls made in a thread, so the reactor keeps serving while they wait.
"""

from __future__ import annotations

import os
from typing import Any

from argon2 import PasswordHasher
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from conduit_tw.homeserver import HomeServer
from conduit_tw.service import make_service
from tests.api.accounts import OPEN
from tests.integration.process import call, free_port
from tests.integration.synapse import SynapseProcess
from tests.integration.test_twistd import _self_signed


async def start_homeserver(case: unittest.TestCase, **overrides: Any) -> HomeServer:
    """
    Start one of our servers for C{case} (stopped by a cleanup) with open
    registration; C{overrides} are config values. Other servers' keys are
    fetched by its real keyring.
    """
    from tests.server import make_config

    workdir = os.path.abspath(case.mktemp())
    os.makedirs(workdir)
    cert, key = _self_signed(workdir)
    port = free_port()
    values: dict[str, Any] = dict(
        server_name=f"localhost:{port}",
        database_path=os.path.join(workdir, "data"),
        address=["127.0.0.1"],
        port=port,
        tls={"certs": cert, "key": key},
        ip_range_denylist=[],
        allow_invalid_tls_certificates=True,
        trusted_servers=[],
        **OPEN,
    )
    values.update(overrides)
    service = make_service(make_config(**values), reactor)
    service.startService()
    case.addCleanup(service.stopService)
    await service.ready
    hs = service.homeserver
    hs.passwords.hasher = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
    return hs


def base_url(hs: HomeServer) -> str:
    """The https URL of a server started by L{start_homeserver}."""
    return f"https://127.0.0.1:{hs.config.port[0]}"


async def client_call(
    base: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """A client-API request to C{base} (ours or a Synapse), made in a thread."""
    return await deferToThread(call, base + path, method, body, token, SynapseProcess.ssl_context)


async def register(hs: HomeServer, username: str) -> tuple[str, str]:
    """Register C{username} on our server; C{(user_id, access_token)}."""
    code, body = await client_call(base_url(hs), "POST", "/_matrix/client/v3/register", {
        "username": username, "password": "secret pw", "auth": {"type": "m.login.dummy"},
    })
    assert code == 200, (code, body)
    return body["user_id"], body["access_token"]
