"""Tests for L{conduit_tw.storage.postgresql} on a throw-away cluster (tests/postgresql.py)."""

from __future__ import annotations

import os

from twisted.trial import unittest

from conduit_tw.storage.postgresql import BACKUP_FILE, PostgreSQLDatabase
from tests.postgresql import database_url
from tests.storage.conformance import KeyValueDatabaseConformanceMixin


class PostgreSQLConformanceTests(KeyValueDatabaseConformanceMixin, unittest.TestCase):
    """
    The conformance suite on PostgreSQL. Each directory stands for one
    database; opening a directory that holds a backup restores it into a
    new, empty database (that is how this backend opens a backup).
    """

    def make_database(self, path: str) -> PostgreSQLDatabase:
        urls = self.__dict__.setdefault("_urls", {})
        if path not in urls or os.path.exists(os.path.join(path, BACKUP_FILE)):
            urls[path] = database_url(self)
        return PostgreSQLDatabase(path, {"database_url": urls[path]})
