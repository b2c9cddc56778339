"""
A representative part of the API suite in "deferred" mode: every read and
write of the storage answers on a later reactor turn
(tests/storage/deferred.py), as with a network backend. The whole suite
runs that way with C{CONDUIT_TEST_BACKEND=deferred}.
"""

from __future__ import annotations

from tests.api import test_account_data, test_media, test_receipts, test_rooms_send, test_sync
from tests.server import on_backend

on_backend(
    "deferred", globals(),
    test_rooms_send.SendTests,
    test_rooms_send.RedactionTests,
    test_rooms_send.HistoryVisibilityTests,
    test_rooms_send.NotifierTests,
    test_sync.InitialSyncTests,
    test_sync.IncrementalSyncTests,
    test_sync.LongPollTests,
    test_sync.MembershipSectionTests,
    test_sync.IncrementalBehaviourTests,
    test_media.AsyncUploadTests,
    test_receipts.ReceiptTests,
    test_account_data.AccountDataTests,
)
