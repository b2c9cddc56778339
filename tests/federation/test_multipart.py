"""The multipart/mixed bodies of federation media (federation/multipart.py)."""

from __future__ import annotations

import io

from twisted.trial import unittest

from conduit_tw.federation import multipart
from conduit_tw.federation.multipart import MultipartError


def _body(boundary: str, headers: dict[bytes, bytes], data: bytes | None) -> bytes:
    f = multipart.multipart_body(boundary, headers, io.BytesIO(data) if data is not None else None,
                                 len(data or b""))
    out = b""
    while True:
        chunk = f.read(7)  # small reads cross every piece boundary
        if not chunk:
            break
        out += chunk
    f.close()
    return out


class EncodeTests(unittest.TestCase):
    def test_round_trip(self) -> None:
        boundary = multipart.new_boundary()
        data = b"\x00\xffbinary\r\n--not-the-boundary\r\n" * 100
        raw = _body(boundary, {b"Content-Type": b"image/png",
                               b"Content-Disposition": b'inline; filename="a b.png"'}, data)
        self.assertTrue(raw.startswith(b"--" + boundary.encode() + b"\r\nContent-Type: application/json"))
        self.assertTrue(raw.endswith(b"\r\n--" + boundary.encode() + b"--\r\n"))
        part = multipart.parse(io.BytesIO(raw), boundary)
        self.assertEqual(part.metadata, {})
        self.assertEqual(raw[part.start:part.end], data)
        self.assertEqual(part.headers["content-type"], "image/png")
        self.assertIsNone(part.location)
        self.assertEqual(multipart.disposition_filename(part.headers["content-disposition"]), "a b.png")

    def test_size_matches(self) -> None:
        f = multipart.multipart_body("b", {b"Content-Type": b"text/plain"}, io.BytesIO(b"hello"), 5)
        self.assertEqual(len(f.read()), f.size)

    def test_random_boundaries(self) -> None:
        self.assertNotEqual(multipart.new_boundary(), multipart.new_boundary())
        self.assertEqual(multipart.content_type("xyz"), b"multipart/mixed; boundary=xyz")

    def test_location(self) -> None:
        raw = _body("bnd", {b"Location": b"https://cdn.example/x"}, None)
        part = multipart.parse(io.BytesIO(raw), "bnd")
        self.assertEqual(part.location, "https://cdn.example/x")
        self.assertEqual(part.start, part.end)


class ParseTests(unittest.TestCase):
    def parse(self, raw: bytes, boundary: str = "B") -> multipart.SecondPart:
        return multipart.parse(io.BytesIO(raw), boundary)

    def test_synapse_style_with_preamble_and_epilogue(self) -> None:
        raw = (b"preamble\r\n--B\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\r\n"
               b"--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B--\r\nepilogue")
        part = self.parse(raw)
        self.assertEqual(part.metadata, {"a": 1})
        self.assertEqual(raw[part.start:part.end], b"hello")

    def test_empty_media(self) -> None:
        raw = b"--B\r\nContent-Type: application/json\r\n\r\n{}\r\n--B\r\n\r\n\r\n--B--\r\n"
        part = self.parse(raw)
        self.assertEqual(part.start, part.end)
        self.assertEqual(part.headers["content-type"], "application/octet-stream")

    def test_malformed(self) -> None:
        bad = [
            b"",
            b"no delimiter at all",
            b"--B\r\nContent-Type: application/json\r\n\r\n{}\r\n--B--\r\n",  # one part
            b"--B\r\nContent-Type: application/json\r\n\r\n{}",  # no second part
            b"--B\r\nContent-Type: application/json\r\n\r\nnot json\r\n--B\r\n\r\nx\r\n--B--",
            b"--B\r\nContent-Type: application/json\r\n\r\n[]\r\n--B\r\n\r\nx\r\n--B--",
            b"--B\r\nContent-Type: text/html\r\n\r\n{}\r\n--B\r\n\r\nx\r\n--B--",
            b"--B\r\nContent-Type: application/json\r\n\r\n{}\r\n--B\r\nContent-Type: a/b\r\n\r\nx",
            b"--B\r\nContent-Type: application/json\r\n\r\n{}\r\n--B\r\nbroken header\r\n\r\nx\r\n--B--",
            b"--B\r\nContent-Type: application/json\r\n\r\n{}\r\n--B\r\n" + b"X: y\r\n" * 20000,
        ]
        for raw in bad:
            with self.assertRaises(MultipartError, msg=raw[:80]):
                self.parse(raw)

    def test_boundary_of(self) -> None:
        self.assertEqual(multipart.boundary_of("multipart/mixed; boundary=abc"), "abc")
        self.assertEqual(multipart.boundary_of('Multipart/Mixed;boundary="a b"'), "a b")
        self.assertIsNone(multipart.boundary_of("application/json"))
        self.assertIsNone(multipart.boundary_of(None))
        with self.assertRaises(MultipartError):
            multipart.boundary_of("multipart/mixed")

    def test_disposition_filename(self) -> None:
        f = multipart.disposition_filename
        self.assertEqual(f('attachment; filename="x.txt"'), "x.txt")
        self.assertEqual(f("inline; filename=plain.bin"), "plain.bin")
        self.assertEqual(f("attachment; filename*=utf-8''%C3%A9t%C3%A9.txt"), "été.txt")
        self.assertEqual(f('attachment; filename="fallback"; filename*=UTF-8\'\'real'), "real")
        self.assertIsNone(f("attachment"))
        self.assertIsNone(f(None))
        self.assertIsNone(f("attachment; filename*=utf-8''%FF%FE"))
