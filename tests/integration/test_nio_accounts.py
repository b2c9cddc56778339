"""
A real client against the real server: matrix-nio (asyncio, aiohttp)
registers, logs in, calls whoami, renames its device, sets its display
name, logs out, and is refused afterwards — against `twistd -n conduit`
on loopback, in open-registration and registration-token modes.

nio runs in its own asyncio loop in the test thread (the server is another
process), so these are synchronous trial tests.
"""

from __future__ import annotations

from tests.integration.nio_support import NIO_MISSING, OPEN_REGISTRATION, ServerTestCase, nio


class NioAccountTests(ServerTestCase):
    """matrix-nio drives the account API end to end."""

    skip = NIO_MISSING
    nio_timeout = 60

    async def _session(self, base_url: str, register) -> None:
        client = nio.AsyncClient(base_url, "alice")
        other = nio.AsyncClient(base_url, "alice")
        try:
            resp = await register(client)
            self.assertIsInstance(resp, nio.RegisterResponse, resp)
            self.assertEqual(resp.user_id, "@alice:localhost")

            who = await client.whoami()
            self.assertIsInstance(who, nio.WhoamiResponse, who)
            self.assertEqual(who.user_id, "@alice:localhost")
            self.assertEqual(who.device_id, resp.device_id)

            login = await other.login("correct horse", device_name="nio second")
            self.assertIsInstance(login, nio.LoginResponse, login)
            self.assertNotEqual(login.device_id, resp.device_id)

            renamed = await other.update_device(login.device_id, {"display_name": "renamed"})
            self.assertIsInstance(renamed, nio.UpdateDeviceResponse, renamed)
            devices = await other.devices()
            self.assertIsInstance(devices, nio.DevicesResponse, devices)
            names = {d.id: d.display_name for d in devices.devices}
            self.assertEqual(names[login.device_id], "renamed")
            self.assertIn(resp.device_id, names)

            set_name = await other.set_displayname("Alice")
            self.assertIsInstance(set_name, nio.ProfileSetDisplayNameResponse, set_name)
            got = await client.get_displayname()
            self.assertEqual(got.displayname, "Alice")

            old_token = other.access_token
            out = await other.logout()
            self.assertIsInstance(out, nio.LogoutResponse, out)
            other.access_token = old_token
            refused = await other.whoami()
            self.assertIsInstance(refused, nio.WhoamiError)
            self.assertEqual(refused.status_code, "M_UNKNOWN_TOKEN")

            bad = await other.login("wrong password")
            self.assertIsInstance(bad, nio.LoginError)
            self.assertEqual(bad.status_code, "M_FORBIDDEN")

            # The first client is unaffected by the second one's logout.
            self.assertIsInstance(await client.whoami(), nio.WhoamiResponse)
        finally:
            await client.close()
            await other.close()

    def test_open_registration(self) -> None:
        server = self._server(OPEN_REGISTRATION)

        async def register(client):
            return await client.register("alice", "correct horse", device_name="nio phone")

        self._run_async(self._session(server.base_url, register))

    def test_token_registration(self) -> None:
        server = self._server('registration_token = "nio-test-token"\n')

        async def register(client):
            bad = await client.register("alice", "correct horse")
            self.assertIsInstance(bad, nio.responses.RegisterErrorResponse)
            return await client.register_with_token("alice", "correct horse", "nio-test-token")

        self._run_async(self._session(server.base_url, register))
