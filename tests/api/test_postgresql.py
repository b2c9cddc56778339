"""
A representative part of the API suite on the postgresql backend (a
throw-away cluster, tests/postgresql.py), run by C{make test}: sending,
redactions, history visibility, the notifier, /sync, receipts (a
read-then-write), account data, to-device messages, membership, login and
the admin room's backup. The whole suite (about 860 tests) runs on it
with C{CONDUIT_TEST_BACKEND=postgresql}; it is not part of C{make test}
because it takes several times as long as on SQLite (every test creates
a database, every read is a round trip), beyond CI's budget on 2 cores.
(Not LongPollTests: its 100 ms bound includes the send's own round trips,
which PostgreSQL on a loaded machine can exceed.)
"""

from __future__ import annotations

from tests.api import (
    test_account_data,
    test_admin_room,
    test_login,
    test_receipts,
    test_rooms_membership,
    test_rooms_send,
    test_sync,
    test_to_device,
)
from tests.server import HomeserverTestCase, on_backend

on_backend(
    "postgresql", globals(),
    test_rooms_send.SendTests,
    test_rooms_send.RedactionTests,
    test_rooms_send.HistoryVisibilityTests,
    test_rooms_send.NotifierTests,
    test_sync.InitialSyncTests,
    test_sync.IncrementalSyncTests,
    test_sync.MembershipSectionTests,
    test_sync.IncrementalBehaviourTests,
    test_receipts.ReceiptTests,
    test_account_data.AccountDataTests,
    test_to_device.ToDeviceTests,
    test_rooms_membership.MembershipTests,
    test_login.LoginTests,
    test_admin_room.BackupTests,
)


class RunsOnPostgreSQLTests(HomeserverTestCase):
    """The classes above do run on PostgreSQL."""

    backend = "postgresql"

    def test_backend(self) -> None:
        from conduit_tw.storage.postgresql import PostgreSQLDatabase

        self.assertIsInstance(self.hs.db, PostgreSQLDatabase)
