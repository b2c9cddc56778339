"""
A representative part of the API suite on the postgresql backend (a
throw-away cluster, tests/postgresql.py): sending, redactions, history
visibility, the notifier and /sync. The whole suite runs on it with
C{CONDUIT_TEST_BACKEND=postgresql}.
"""

from __future__ import annotations

from tests.api import test_rooms_send, test_sync
from tests.server import HomeserverTestCase


class SendOnPostgreSQLTests(test_rooms_send.SendTests):
    backend = "postgresql"


class RedactionOnPostgreSQLTests(test_rooms_send.RedactionTests):
    backend = "postgresql"


class HistoryVisibilityOnPostgreSQLTests(test_rooms_send.HistoryVisibilityTests):
    backend = "postgresql"


class NotifierOnPostgreSQLTests(test_rooms_send.NotifierTests):
    backend = "postgresql"


class InitialSyncOnPostgreSQLTests(test_sync.InitialSyncTests):
    backend = "postgresql"


class IncrementalSyncOnPostgreSQLTests(test_sync.IncrementalSyncTests):
    backend = "postgresql"


class IncrementalBehaviourOnPostgreSQLTests(test_sync.IncrementalBehaviourTests):
    # (Not LongPollTests: its 100 ms bound includes the send's own round
    # trips, which a loaded machine's PostgreSQL can exceed.)
    backend = "postgresql"


class MembershipSectionOnPostgreSQLTests(test_sync.MembershipSectionTests):
    backend = "postgresql"


class RunsOnPostgreSQLTests(HomeserverTestCase):
    """The classes above do run on PostgreSQL."""

    backend = "postgresql"

    def test_backend(self) -> None:
        from conduit_tw.storage.postgresql import PostgreSQLDatabase

        self.assertIsInstance(self.hs.db, PostgreSQLDatabase)
