"""
OpenID between two of our servers over TLS on loopback (server-server-api
"OpenID"): a token issued by A is exchanged at A by B's federation client
(server discovery, TLS) and by a plain unsigned HTTPS request, as a
third-party service would.
"""

from __future__ import annotations

from urllib.parse import quote

from twisted.trial import unittest

from conduit_tw.federation.errors import RemoteError
from tests.integration.federation import base_url, client_call, register, start_homeserver

USERINFO = "/_matrix/federation/v1/openid/userinfo"


class OpenIdFederationTests(unittest.TestCase):
    """A issues, B (and an unsigned caller) exchange."""

    async def test_exchange(self) -> None:
        a = await start_homeserver(self)
        b = await start_homeserver(self)
        user_id, token = await register(a, "alice")
        code, body = await client_call(
            base_url(a), "POST",
            f"/_matrix/client/v3/user/{quote(user_id, safe='')}/openid/request_token", {}, token,
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["matrix_server_name"], a.server_name)
        oid = body["access_token"]
        answer = await b.federation_client.get_json(
            body["matrix_server_name"], USERINFO, {"access_token": oid}
        )
        self.assertEqual(answer, {"sub": user_id})
        # The caller checks the user is on the server it asked.
        self.assertEqual(answer["sub"].partition(":")[2], a.server_name)
        code, body = await client_call(
            base_url(a), "GET", USERINFO + "?access_token=" + quote(oid, safe="")
        )
        self.assertEqual((code, body), (200, {"sub": user_id}))
        with self.assertRaises(RemoteError) as caught:
            await b.federation_client.get_json(a.server_name, USERINFO, {"access_token": "nope"})
        self.assertEqual((caught.exception.code, caught.exception.errcode), (401, "M_UNKNOWN_TOKEN"))
