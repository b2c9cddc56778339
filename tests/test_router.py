"""The router."""

from twisted.trial import unittest

from conduit_tw.api.router import Router
from conduit_tw.errors import MatrixError


async def h1(request, **kw):  # pragma: no cover - identity only
    return kw


async def h2(request, **kw):  # pragma: no cover
    return kw


class RouterTests(unittest.SynchronousTestCase):
    """Static and dynamic routes, decoding, 404 vs 405."""

    def setUp(self) -> None:
        self.r = Router()
        self.r.add("GET", "/_matrix/client/versions", h1)
        self.r.add("PUT", "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}", h1)
        self.r.add("GET", "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key:*}", h2)

    def test_static(self) -> None:
        self.assertEqual(self.r.resolve("GET", "/_matrix/client/versions"), (h1, {}))
        self.assertEqual(self.r.resolve("HEAD", "/_matrix/client/versions/"), (h1, {}))

    def test_dynamic_decodes(self) -> None:
        handler, args = self.r.resolve(
            "PUT", "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/t%2F1"
        )
        self.assertIs(handler, h1)
        self.assertEqual(
            args, {"room_id": "!abc:example.org", "event_type": "m.room.message", "txn_id": "t/1"}
        )

    def test_rest(self) -> None:
        _, args = self.r.resolve("GET", "/_matrix/client/v3/rooms/!a:b/state/m.room.name")
        self.assertEqual(args["state_key"], "")
        _, args = self.r.resolve("GET", "/_matrix/client/v3/rooms/!a:b/state/m.room.member/%40u%3Ab")
        self.assertEqual(args["state_key"], "@u:b")

    def test_errors(self) -> None:
        e = self.assertRaises(MatrixError, self.r.resolve, "GET", "/_matrix/client/v3/nope")
        self.assertEqual((e.code, e.errcode), (404, "M_UNRECOGNIZED"))
        e = self.assertRaises(MatrixError, self.r.resolve, "POST", "/_matrix/client/versions")
        self.assertEqual((e.code, e.errcode), (405, "M_UNRECOGNIZED"))
        e = self.assertRaises(
            MatrixError, self.r.resolve, "GET", "/_matrix/client/v3/rooms/x/send/t/1"
        )
        self.assertEqual(e.code, 405)
