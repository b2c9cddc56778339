"""
The X-Matrix C{Authorization} scheme (server-server-api "Request
Authentication"): every federation request is signed by the origin server
over a JSON object holding the method, the request target (path and
query), origin, destination and the JSON body; the signature travels in
the header.

Signing and checking go through the project's one JSON signing path
(L{conduit_tw.events.signing}, canonical JSON from
L{conduit_tw.events.canonical_json}); this module only builds the signed
object and reads and writes the header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from conduit_tw.events.canonical_json import InvalidJson, encode_canonical_json
from conduit_tw.events.hashes import encode_base64
from conduit_tw.events.signing import SignatureError, verify_json

SCHEME = "X-Matrix"


class XMatrixParseError(ValueError):
    """The header is not a well-formed X-Matrix authorization."""


@dataclass(frozen=True)
class XMatrixAuth:
    """
    The parameters of an X-Matrix header.

    @ivar destination: C{None} when the sender left it out (servers older
        than spec v1.3; recipients must accept that).
    """

    origin: str
    destination: str | None
    key_id: str
    signature: str


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Any = None
) -> dict[str, Any]:
    """
    The object that is signed (step 1 of "Request Authentication").

    @param uri: the request target: the path from C{/_matrix/...} with the
        C{?} and query string if any, exactly as sent on the request line.
    @param content: the parsed JSON body; left out when C{None} (no body).
    """
    obj: dict[str, Any] = {
        "method": method,
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def _quote(value: str) -> str:
    """A quoted-string (RFC 9110, section 5.6.4)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sign_request(
    signing_key: SigningKey,
    key_id: str,
    origin: str,
    destination: str,
    method: str,
    uri: str,
    content: Any = None,
) -> bytes:
    """
    The C{Authorization} header value for a request from C{origin} to
    C{destination}, written as the spec asks senders to for compatibility:
    one space after C{X-Matrix}, lower-case names, no spaces around commas,
    every value quoted.

    @param key_id: the ID of C{signing_key} (C{ed25519:<version>}).
    @raise SignatureError: C{content} cannot be encoded as canonical JSON.
    """
    try:
        message = encode_canonical_json(request_json(method, uri, origin, destination, content))
    except InvalidJson as e:
        raise SignatureError(f"cannot sign request body: {e}") from None
    signature = encode_base64(signing_key.sign(message).signature)
    params = (
        ("origin", origin),
        ("destination", destination),
        ("key", key_id),
        ("sig", signature),
    )
    return (SCHEME + " " + ",".join(f"{n}={_quote(v)}" for n, v in params)).encode("utf-8")


_OWS = " \t"
#: Characters ending an unquoted value. Anything else is accepted (colons,
#: as the spec asks for compatibility; also base64's C{/} and C{+}).
_VALUE_END = ",\t "


def _parse_params(text: str) -> dict[str, str]:
    """
    C{auth-param *( OWS "," OWS auth-param )} (RFC 9110, section 11.4),
    names case-insensitive, values tokens or quoted-strings with
    backslash escapes.
    """
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and (text[i] in _OWS or text[i] == ","):
            i += 1
        if i >= n:
            return params
        eq = text.find("=", i)
        if eq == -1:
            raise XMatrixParseError(f"parameter without a value: {text[i:]!r}")
        name = text[i:eq].strip(_OWS).lower()
        if not name or any(c in name for c in ',"' + _OWS):
            raise XMatrixParseError(f"bad parameter name {text[i:eq]!r}")
        i = eq + 1
        while i < n and text[i] in _OWS:
            i += 1
        if i < n and text[i] == '"':
            chars: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise XMatrixParseError(f"unterminated quoted value for {name!r}")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise XMatrixParseError(f"unterminated quoted value for {name!r}")
                    chars.append(text[i + 1])
                    i += 2
                    continue
                i += 1
                if c == '"':
                    break
                chars.append(c)
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] not in _VALUE_END:
                if text[i] == '"':
                    raise XMatrixParseError(f"stray quote in the value of {name!r}")
                i += 1
            value = text[start:i]
        while i < n and text[i] in _OWS:
            i += 1
        if i < n and text[i] != ",":
            raise XMatrixParseError(f"expected ',' after {name!r}")
        if name in params:
            raise XMatrixParseError(f"parameter {name!r} given twice")
        params[name] = value


def parse_authorization(header: bytes | str) -> XMatrixAuth:
    """
    Parse an C{Authorization} header value of the X-Matrix scheme.

    Tolerant of everything the spec's grammar allows: the scheme in any
    case, one or more spaces after it, spaces and tabs around commas,
    names in any case and order, quoted or unquoted values (unquoted ones
    may contain colons), backslash escapes in quoted values; unknown
    parameters are ignored.

    @raise XMatrixParseError: another scheme, a malformed header, or a
        missing C{origin}, C{key} or C{sig}.
    """
    if isinstance(header, bytes):
        try:
            text = header.decode("utf-8")
        except UnicodeDecodeError:
            raise XMatrixParseError("header is not UTF-8") from None
    else:
        text = header
    text = text.strip(_OWS)
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != SCHEME.lower():
        raise XMatrixParseError("not the X-Matrix scheme")
    params = _parse_params(rest)
    missing = [p for p in ("origin", "key", "sig") if not params.get(p)]
    if missing:
        raise XMatrixParseError(f"missing {', '.join(missing)}")
    destination = params.get("destination")
    return XMatrixAuth(
        origin=params["origin"],
        destination=destination if destination else None,
        key_id=params["key"],
        signature=params["sig"],
    )


def verify_request(
    auth: XMatrixAuth,
    method: str,
    uri: str,
    destination: str,
    content: Any,
    verify_key: VerifyKey,
) -> None:
    """
    Check an inbound request's signature.

    @param destination: our own server name: the signed object always
        names it, whether the header carried C{destination} or not.
    @param content: the parsed JSON body, or C{None} when there was none.
    @param verify_key: C{auth.origin}'s key C{auth.key_id}.
    @raise SignatureError: the request is not for us, or the signature
        does not verify.
    """
    if auth.destination is not None and auth.destination != destination:
        raise SignatureError(f"request is for {auth.destination}, not {destination}")
    signed = request_json(method, uri, auth.origin, destination, content)
    signed["signatures"] = {auth.origin: {auth.key_id: auth.signature}}
    verify_json(signed, auth.origin, {auth.key_id: verify_key})
