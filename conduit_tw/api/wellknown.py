"""
C{/.well-known/matrix/{client,server,support}} from C{[global.well_known]}
(client-server-api "Server Discovery", server-server-api "Resolving server
names", client-server-api "Getting the support information"). Each answers
404 when its keys are unset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conduit_tw.api.resource import MatrixRequest, encode_json
from conduit_tw.api.router import Router
from conduit_tw.errors import not_found

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer


def client_document(hs: "HomeServer") -> dict[str, Any] | None:
    """The C{/.well-known/matrix/client} document, or None when unset."""
    base = hs.config.well_known.client
    if not base:
        return None
    return {"m.homeserver": {"base_url": base.rstrip("/")}}


def _support_document(hs: "HomeServer") -> dict[str, Any] | None:
    wk = hs.config.well_known
    contacts = []
    role = getattr(wk, "support_role", None) or "m.role.admin"
    email = getattr(wk, "support_email", None)
    mxid = getattr(wk, "support_mxid", None)
    if email or mxid:
        contact: dict[str, str] = {"role": role}
        if email:
            contact["email_address"] = email
        if mxid:
            contact["matrix_id"] = mxid
        contacts.append(contact)
    page = getattr(wk, "support_page", None)
    if not contacts and not page:
        return None
    doc: dict[str, Any] = {}
    if contacts:
        doc["contacts"] = contacts
    if page:
        doc["support_page"] = page
    return doc


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the well-known documents, computed once from the config."""
    server = hs.config.well_known.server
    documents = {
        "client": client_document(hs),
        "server": {"m.server": server} if server else None,
        "support": _support_document(hs),
    }
    encoded = {k: encode_json(v) if v is not None else None for k, v in documents.items()}

    def serve(name: str):
        async def handler(request: MatrixRequest):
            body = encoded[name]
            if body is None:
                raise not_found(f"No {name} well-known information is configured")
            request.setHeader(b"Content-Type", b"application/json")
            return 200, body

        handler.__doc__ = f"GET /.well-known/matrix/{name}"
        return handler

    for name in documents:
        router.add("GET", f"/.well-known/matrix/{name}", serve(name))
