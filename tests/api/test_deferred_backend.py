"""
A representative part of the API suite in "deferred" mode: every read and
write of the storage answers on a later reactor turn
(tests/storage/deferred.py), as with a network backend. The whole suite
runs that way with C{CONDUIT_TEST_BACKEND=deferred}.
"""

from __future__ import annotations

from tests.api import test_rooms_send, test_sync


class SendDeferredTests(test_rooms_send.SendTests):
    backend = "deferred"


class RedactionDeferredTests(test_rooms_send.RedactionTests):
    backend = "deferred"


class HistoryVisibilityDeferredTests(test_rooms_send.HistoryVisibilityTests):
    backend = "deferred"


class NotifierDeferredTests(test_rooms_send.NotifierTests):
    backend = "deferred"


class InitialSyncDeferredTests(test_sync.InitialSyncTests):
    backend = "deferred"


class IncrementalSyncDeferredTests(test_sync.IncrementalSyncTests):
    backend = "deferred"


class LongPollDeferredTests(test_sync.LongPollTests):
    backend = "deferred"


class MembershipSectionDeferredTests(test_sync.MembershipSectionTests):
    backend = "deferred"


class IncrementalBehaviourDeferredTests(test_sync.IncrementalBehaviourTests):
    backend = "deferred"
