"""gzip_compression: JSON answers are gzipped for clients that accept it."""

from __future__ import annotations

import gzip
import json

from tests.server import HomeserverTestCase

BIG = "/_test/big"
SMALL = "/_matrix/client/versions"


class _BigRoute(HomeserverTestCase):
    async def _start(self) -> None:
        await super()._start()

        async def big(request):
            return {"rooms": [f"!room{i}:test" for i in range(100)]}

        self.hs.router.add("GET", BIG, big)


class GzipOnTests(_BigRoute):
    config_overrides = {"gzip_compression": True}

    async def test_compressed_when_accepted(self) -> None:
        plain = await self.request("GET", BIG)
        self.assertGreater(len(plain.body), 256)
        r = await self.request("GET", BIG, headers={"Accept-Encoding": "br, gzip;q=0.8"})
        self.assertEqual(r.code, 200)
        self.assertEqual(r.header("content-encoding"), "gzip")
        self.assertEqual(r.header("vary"), "Accept-Encoding")
        self.assertEqual(int(r.header("content-length") or 0), len(r.body))
        self.assertLess(len(r.body), len(plain.body))
        self.assertEqual(json.loads(gzip.decompress(r.body)), plain.json)

    async def test_not_compressed_otherwise(self) -> None:
        for headers in ({}, {"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip;q=0"}):
            r = await self.request("GET", BIG, headers=headers)
            self.assertIsNone(r.header("content-encoding"), headers)
            self.assertEqual(len(r.json["rooms"]), 100)

    async def test_small_bodies_and_errors_stay_plain(self) -> None:
        r = await self.request("GET", SMALL, headers={"Accept-Encoding": "gzip"})
        self.assertIsNone(r.header("content-encoding"))
        self.assertIn("versions", r.json)
        r = await self.request("GET", "/_matrix/client/v3/nope", headers={"Accept-Encoding": "gzip"})
        self.assertIsNone(r.header("content-encoding"))
        self.assertEqual(r.json["errcode"], "M_UNRECOGNIZED")


class GzipOffTests(_BigRoute):
    async def test_off_by_default(self) -> None:
        r = await self.request("GET", BIG, headers={"Accept-Encoding": "gzip"})
        self.assertIsNone(r.header("content-encoding"))
        self.assertEqual(len(r.json["rooms"]), 100)
