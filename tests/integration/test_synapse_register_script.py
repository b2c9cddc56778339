"""
Synapse's own C{register_new_matrix_user} script (from the Synapse venv
that C{make synapse} installs) creates an admin and a plain user on
C{twistd -n conduit} through the shared secret, with registration closed;
both then log in. (Under CI a missing Synapse venv is a failure, as for
the other Synapse interop tests.)
"""

from __future__ import annotations

import os
import subprocess

from twisted.trial import unittest

from tests.integration.nio_support import ServerTestCase
from tests.integration.synapse import SYNAPSE_PYTHON, synapse_installed

SECRET = "shared-secret-for-the-script-test"


class RegisterScriptTests(ServerTestCase):
    def _script(self, base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
        script = os.path.join(os.path.dirname(SYNAPSE_PYTHON), "register_new_matrix_user")
        return subprocess.run(
            [script, "-k", SECRET, *args, base_url],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )

    def test_register_new_matrix_user(self) -> None:
        if not synapse_installed():
            message = f"Synapse is not installed ({SYNAPSE_PYTHON}); run `make synapse`"
            if os.environ.get("CI"):
                raise AssertionError(message)
            raise unittest.SkipTest(message)
        server = self._server(
            'registration_token = "not-given-to-anyone-0123456789"\n'
            f'registration_shared_secret = "{SECRET}"\n'
        )
        done = self._script(server.base_url, "-u", "root", "-p", "root-password-1", "-a")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        done = self._script(server.base_url, "-u", "carol", "-p", "carol-password-1", "--no-admin")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        tokens = {}
        for user, admin in (("root", True), ("carol", False)):
            code, body = server.call("POST", "/_matrix/client/v3/login", {
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                "password": f"{user}-password-1",
            })
            self.assertEqual(code, 200, body)
            tokens[user] = body["access_token"]
            code, joined = server.get("/_matrix/client/v3/joined_rooms", token=tokens[user])
            self.assertEqual(code, 200, joined)
            # The admin was joined to #admins; the other user is in no room.
            self.assertEqual(len(joined["joined_rooms"]), 1 if admin else 0, (user, joined))
        # Server admins may ask about any user, others only about themselves.
        code, whois = server.get("/_matrix/client/v3/admin/whois/@carol:localhost", token=tokens["root"])
        self.assertEqual(code, 200, whois)
        code, whois = server.get("/_matrix/client/v3/admin/whois/@root:localhost", token=tokens["carol"])
        self.assertEqual(code, 403, whois)
        # A wrong secret is refused and creates nobody.
        script = os.path.join(os.path.dirname(SYNAPSE_PYTHON), "register_new_matrix_user")
        done = subprocess.run(
            [script, "-k", "wrong", "-u", "mallory", "-p", "pw-mallory-1", "--no-admin", server.base_url],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        self.assertNotEqual(done.returncode, 0)
        code, _ = server.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "mallory"},
            "password": "pw-mallory-1",
        })
        self.assertEqual(code, 403)
