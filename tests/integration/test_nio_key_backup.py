"""
Key backup end to end against the real `twistd -n conduit`: a matrix-nio
client (its HTTP session and access token) creates a backup and uploads
megolm session keys encrypted with C{m.megolm_backup.v1.curve25519-aes-sha2}
(tests/megolm_backup.py: nio has no key backup API, so the room_keys
requests go through nio's raw C{send}); the server is killed (SIGKILL)
and restarted; a second nio device of the same user finds the backup,
downloads it and decrypts the exact session keys.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tests.integration.nio_support import NIO_MISSING, ServerTestCase, nio
from tests.megolm_backup import ALGORITHM, BackupKey, backup_upload, megolm_session, restore

BASE = "/_matrix/client/v3/room_keys"


class NioKeyBackupTests(ServerTestCase):
    """Backup by one nio device, restore by another, across a crash."""

    skip = NIO_MISSING
    nio_timeout = 60

    async def _call(self, client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {client.access_token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        resp = await client.send(method, BASE + path, data, headers)
        return resp.status, await resp.json()

    async def _backup(self, base_url: str, key: BackupKey, sessions: dict) -> str:
        async with self._registered(base_url, "alice") as (alice,):
            status, body = await self._call(
                alice, "POST", "/version", {"algorithm": ALGORITHM, "auth_data": {"public_key": key.public_b64}}
            )
            self.assertEqual(status, 200, body)
            version = body["version"]
            status, body = await self._call(
                alice, "PUT", f"/keys?version={version}", backup_upload(key.public_b64, sessions)
            )
            self.assertEqual((status, body["count"]), (200, len(sessions)), body)
            room, session_id = next(iter(sessions))
            status, body = await self._call(
                alice, "GET", f"/keys/{quote(room)}/{quote(session_id, safe='')}?version={version}"
            )
            self.assertEqual(status, 200, body)
            return version

    async def _restore(self, base_url: str, key: BackupKey, version: str) -> dict:
        client = nio.AsyncClient(base_url, "alice")
        try:
            login = await client.login("password-alice", device_name="new device")
            self.assertIsInstance(login, nio.LoginResponse, login)
            status, info = await self._call(client, "GET", "/version")
            self.assertEqual(status, 200, info)
            self.assertEqual(
                (info["version"], info["algorithm"], info["auth_data"]["public_key"]),
                (version, ALGORITHM, key.public_b64),
            )
            status, backup = await self._call(client, "GET", f"/keys?version={version}")
            self.assertEqual(status, 200, backup)
            return restore(key, backup)
        finally:
            await client.close()

    def test_backup_and_restore_across_restart(self) -> None:
        server = self._server()
        key = BackupKey()
        sessions = {
            ("!enc:localhost", f"session/{i}+x"): megolm_session() for i in range(5)
        }
        version = self._run_async(self._backup(server.base_url, key, sessions))
        server.kill()
        server.start()
        restored = self._run_async(self._restore(server.base_url, key, version))
        self.assertEqual(restored, sessions)
