"""
X-Matrix request authentication (conduit_tw/federation/xmatrix.py), checked
against the spec's example code run with signedjson (an independent
implementation of JSON signing).
"""

from __future__ import annotations

from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from twisted.trial import unittest

from conduit_tw.events.signing import SignatureError
from conduit_tw.federation.xmatrix import (
    XMatrixAuth,
    XMatrixParseError,
    parse_authorization,
    request_json,
    sign_request,
    verify_request,
)

ORIGIN = "origin.hs.example.com"
DESTINATION = "destination.hs.example.com"


def spec_authorization_headers(origin_name, origin_signing_key, destination_name,
                               request_method, request_target, content=None):
    """
    The spec's example (server-server-api "Request Authentication"), as
    printed there but for C{sign_json}'s signedjson argument order and
    C{bytes(...)}, which needs an encoding in Python 3.
    """
    request_json = {
        "method": request_method,
        "uri": request_target,
        "origin": origin_name,
        "destination": destination_name,
    }
    if content is not None:
        request_json["content"] = content
    signed_json = sign_json(request_json, origin_name, origin_signing_key)
    authorization_headers = []
    for key, sig in signed_json["signatures"][origin_name].items():
        authorization_headers.append(bytes(
            "X-Matrix origin=\"%s\",destination=\"%s\",key=\"%s\",sig=\"%s\"" % (
                origin_name, destination_name, key, sig,
            ), "utf-8"
        ))
    return ("Authorization", authorization_headers[0])


class SpecExampleTests(unittest.TestCase):
    def setUp(self) -> None:
        self.key = generate_signing_key("key1")
        self.key_id = "ed25519:key1"

    def test_header_matches_spec_code(self) -> None:
        """Our header is byte for byte what the spec's example code writes."""
        for method, uri, content in [
            ("POST", "/target", {"a": 1, "b": ["x", {"é": None}]}),
            ("GET", "/_matrix/federation/v1/version", None),
            ("PUT", "/_matrix/federation/v1/send/1?x=%20y", {}),
        ]:
            ours = sign_request(self.key, self.key_id, ORIGIN, DESTINATION, method, uri, content)
            _, theirs = spec_authorization_headers(
                ORIGIN, self.key, DESTINATION, method, uri, content
            )
            self.assertEqual(ours, theirs)

    def test_parse_spec_example_header(self) -> None:
        """The header printed in the spec parses into its four parameters."""
        auth = parse_authorization(
            'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",'
            'key="ed25519:key1",sig="ABCDEF..."'
        )
        self.assertEqual(
            auth, XMatrixAuth(ORIGIN, DESTINATION, "ed25519:key1", "ABCDEF...")
        )

    def test_signedjson_verifies_ours(self) -> None:
        """signedjson accepts the signature we put in the header."""
        content = {"pdus": [], "origin": ORIGIN}
        header = sign_request(self.key, self.key_id, ORIGIN, DESTINATION, "PUT", "/t", content)
        auth = parse_authorization(header)
        signed = request_json("PUT", "/t", ORIGIN, DESTINATION, content)
        signed["signatures"] = {ORIGIN: {auth.key_id: auth.signature}}
        verify_signed_json(signed, ORIGIN, get_verify_key(self.key))
        signed["uri"] = "/u"
        self.assertRaises(SignatureVerifyException, verify_signed_json, signed, ORIGIN,
                          get_verify_key(self.key))

    def test_we_verify_spec_code(self) -> None:
        """verify_request accepts what the spec's code (with signedjson) signs."""
        content = {"k": "v", "n": 5}
        _, header = spec_authorization_headers(
            ORIGIN, self.key, DESTINATION, "POST", "/_matrix/x?y=1", content
        )
        auth = parse_authorization(header)
        verify_request(auth, "POST", "/_matrix/x?y=1", DESTINATION, content,
                       get_verify_key(self.key))


class VerifyTests(unittest.TestCase):
    def setUp(self) -> None:
        self.key = generate_signing_key("a_1")
        self.verify_key = get_verify_key(self.key)
        self.content = {"membership": "join"}
        self.auth = parse_authorization(sign_request(
            self.key, "ed25519:a_1", ORIGIN, DESTINATION, "PUT", "/p?q=1", self.content
        ))

    def test_valid(self) -> None:
        verify_request(self.auth, "PUT", "/p?q=1", DESTINATION, self.content, self.verify_key)

    def test_every_signed_field_counts(self) -> None:
        cases = [
            ("POST", "/p?q=1", DESTINATION, self.content),
            ("PUT", "/p?q=2", DESTINATION, self.content),
            ("PUT", "/p", DESTINATION, self.content),
            ("PUT", "/p?q=1", DESTINATION, {"membership": "leave"}),
            ("PUT", "/p?q=1", DESTINATION, None),
        ]
        for method, uri, dest, content in cases:
            with self.assertRaises(SignatureError, msg=(method, uri, content)):
                verify_request(self.auth, method, uri, dest, content, self.verify_key)

    def test_other_destination_refused(self) -> None:
        with self.assertRaises(SignatureError):
            verify_request(self.auth, "PUT", "/p?q=1", "other.example", self.content,
                           self.verify_key)

    def test_without_destination_parameter(self) -> None:
        """Older servers omit destination in the header but sign it in the JSON."""
        auth = XMatrixAuth(ORIGIN, None, self.auth.key_id, self.auth.signature)
        verify_request(auth, "PUT", "/p?q=1", DESTINATION, self.content, self.verify_key)
        with self.assertRaises(SignatureError):
            verify_request(auth, "PUT", "/p?q=1", "other.example", self.content, self.verify_key)

    def test_other_key_or_origin_refused(self) -> None:
        other = get_verify_key(generate_signing_key("b"))
        with self.assertRaises(SignatureError):
            verify_request(self.auth, "PUT", "/p?q=1", DESTINATION, self.content, other)
        forged = XMatrixAuth("evil.example", DESTINATION, self.auth.key_id, self.auth.signature)
        with self.assertRaises(SignatureError):
            verify_request(forged, "PUT", "/p?q=1", DESTINATION, self.content, self.verify_key)

    def test_garbage_signature_or_algorithm(self) -> None:
        for auth in [
            XMatrixAuth(ORIGIN, DESTINATION, "ed25519:a_1", "!!!"),
            XMatrixAuth(ORIGIN, DESTINATION, "ed25519:a_1", "AAAA"),
            XMatrixAuth(ORIGIN, DESTINATION, "rsa:a_1", self.auth.signature),
        ]:
            with self.assertRaises(SignatureError):
                verify_request(auth, "PUT", "/p?q=1", DESTINATION, self.content, self.verify_key)

    def test_empty_object_content_differs_from_none(self) -> None:
        header = sign_request(self.key, "ed25519:a_1", ORIGIN, DESTINATION, "PUT", "/p", {})
        auth = parse_authorization(header)
        verify_request(auth, "PUT", "/p", DESTINATION, {}, self.verify_key)
        with self.assertRaises(SignatureError):
            verify_request(auth, "PUT", "/p", DESTINATION, None, self.verify_key)


class ParseTests(unittest.TestCase):
    """The grammar of RFC 9110 section 11.4 as the spec summarises it."""

    expected = XMatrixAuth("o.example:8448", "d.example", "ed25519:k1", "c2ln+/x")

    def test_tolerated_forms(self) -> None:
        for header in [
            'X-Matrix origin="o.example:8448",destination="d.example",key="ed25519:k1",sig="c2ln+/x"',
            # unquoted values, colons included (compatibility)
            "X-Matrix origin=o.example:8448,destination=d.example,key=ed25519:k1,sig=c2ln+/x",
            # several spaces after the scheme, spaces and tabs around commas
            'X-Matrix   origin="o.example:8448" ,\tdestination="d.example"\t, key="ed25519:k1",sig="c2ln+/x"',
            # case-insensitive scheme and names, any order, unknown parameters
            'x-matrix SIG="c2ln+/x",Key="ed25519:k1",extra="1",Destination=d.example,ORIGIN="o.example:8448"',
            # backslash escapes in quoted values
            'X-Matrix origin="o.exa\\mple:8448",destination="d.example",key="ed25519:k1",sig="c2ln+/x"',
            # whitespace around the value and the header, empty list elements
            'X-Matrix origin = "o.example:8448",,destination="d.example",key="ed25519:k1",sig="c2ln+/x" ',
        ]:
            self.assertEqual(parse_authorization(header), self.expected, header)
            self.assertEqual(parse_authorization(header.encode()), self.expected, header)

    def test_quoted_escapes(self) -> None:
        auth = parse_authorization('X-Matrix origin="a\\"b\\\\c",key="k",sig="s"')
        self.assertEqual(auth.origin, 'a"b\\c')
        self.assertIsNone(auth.destination)

    def test_refused(self) -> None:
        for header in [
            "",
            "Bearer abc",
            "X-Matrix",
            'X-Matrixorigin="o",key="k",sig="s"',
            'X-Matrix origin="o",key="k"',  # no sig
            'X-Matrix key="k",sig="s"',  # no origin
            'X-Matrix origin="",key="k",sig="s"',
            'X-Matrix origin="o,key="k",sig="s"',  # unterminated quote
            'X-Matrix origin="o" key="k",sig="s"',  # missing comma
            'X-Matrix origin,key="k",sig="s"',
            'X-Matrix origin="o",origin="p",key="k",sig="s"',  # ambiguous
            'X-Matrix origin=o"x,key="k",sig="s"',
            b'X-Matrix origin="\xff",key="k",sig="s"',
        ]:
            with self.assertRaises(XMatrixParseError, msg=header):
                parse_authorization(header)
