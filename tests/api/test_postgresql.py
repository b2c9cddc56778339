"""
A representative part of the API suite on the postgresql backend (a
throw-away cluster, tests/postgresql.py): sending, redactions, history
visibility, the notifier and /sync. The whole suite runs on it with
C{CONDUIT_TEST_BACKEND=postgresql}. (Not LongPollTests: its 100 ms bound
includes the send's own round trips, which PostgreSQL on a loaded machine
can exceed.)
"""

from __future__ import annotations

from tests.api import test_rooms_send, test_sync
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
)


class RunsOnPostgreSQLTests(HomeserverTestCase):
    """The classes above do run on PostgreSQL."""

    backend = "postgresql"

    def test_backend(self) -> None:
        from conduit_tw.storage.postgresql import PostgreSQLDatabase

        self.assertIsInstance(self.hs.db, PostgreSQLDatabase)
