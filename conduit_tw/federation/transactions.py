"""
Receiving transactions: C{PUT /_matrix/federation/v1/send/{txnId}}
(server-server-api "Transactions", transactions.yaml), as
L{TransactionHandler.on_send}C{(origin, txn_id, body)} where C{origin} is
the server that signed the request (the X-Matrix check is the API
layer's).

- De-duplication per origin and transaction ID: the response to a
  transaction is stored (storage/stores/federation_queue.py keeps the
  latest one per origin, the only one a sender may retry) and a repeat
  gets it again without processing anything. Transactions of one origin
  are processed one at a time.
- Bodies are checked against transactions.yaml: an object with C{pdus}
  (a list of objects, at most L{MAX_PDUS}) and optional C{edus} (a list
  of objects, at most L{MAX_EDUS}); C{origin}, when given, must be the
  authenticated origin. Anything else is 400 (M_BAD_JSON for a wrong
  shape, M_INVALID_PARAM for too many items or a wrong origin).
- PDUs: each gets a result under its event ID in C{pdus}; one of a room
  whose server ACL denies the origin gets an error ("ACLs MUST be applied
  to all PDUs on a per-PDU basis"). Until the
  inbound PDU pipeline exists (L{TransactionHandler.pdu_handler} is
  None) every PDU gets an C{error} result. The event ID is computed per
  the room's version when the room is known here; otherwise it is the
  PDU's own C{event_id} field (rooms v1-2 format); a PDU with neither
  can't be named and gets no entry.
- EDUs are dispatched by C{edu_type} to L{TransactionHandler.edu_handlers}
  (C{async handler(origin, content)}); unknown types are ignored and a
  failing handler is logged: an EDU never fails a transaction.
- A transaction from a server shows it is up: C{destination_is_up(origin)}
  lets the sender retry it at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import MatrixError, bad_json, invalid_param
from conduit_tw.events.event_ids import compute_event_id
from conduit_tw.logging import get_logger
from conduit_tw.util.linearizer import Linearizer

if TYPE_CHECKING:
    from conduit_tw.events.room_versions import RoomVersion
    from conduit_tw.storage.stores.federation_queue import FederationQueueStore
    from conduit_tw.storage.stores.rooms import RoomInfo

log = get_logger("conduit_tw.federation.transactions")

MAX_PDUS = 50
MAX_EDUS = 100

#: The result of every PDU until the inbound PDU pipeline lands.
PDUS_NOT_ACCEPTED = "This server does not accept events over federation yet"

EduHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
#: C{async pdu_handler(origin, room_version, event_id, pdu) -> error or None}.
PduHandler = Callable[[str, "RoomVersion", str, dict[str, Any]], Awaitable[str | None]]


async def _no_room(room_id: str) -> "RoomInfo | None":
    return None


async def _allow_all(origin: str, room_id: str) -> bool:
    return True


def _noop(server_name: str) -> None:
    return None


class TransactionHandler:
    """See the module docstring."""

    def __init__(
        self,
        store: "FederationQueueStore",
        get_room: Callable[[str], Awaitable["RoomInfo | None"]] = _no_room,
        destination_is_up: Callable[[str], None] = _noop,
    ) -> None:
        self.store = store
        self.get_room = get_room
        self.destination_is_up = destination_is_up
        #: C{edu_type -> async handler(origin, content)}.
        self.edu_handlers: dict[str, EduHandler] = {}
        #: C{async (origin, room_id) -> bool}: the room's server ACL check
        #: (federation/edu.py registers it); every PDU is checked.
        self.acl_allows: Callable[[str, str], Awaitable[bool]] = _allow_all
        #: The inbound PDU pipeline (federated rooms); None refuses every PDU.
        self.pdu_handler: PduHandler | None = None
        self._linearizer = Linearizer("federation-txn")

    async def on_send(self, origin: str, txn_id: str, body: Any) -> dict[str, Any]:
        """C{PUT /send/{txnId}} from C{origin}; returns the 200 body."""
        pdus, edus = self._check(origin, body)
        self.destination_is_up(origin)
        async with self._linearizer.queue(origin):
            stored = await self.store.received_response(origin, txn_id)
            if stored is not None:
                return stored
            results: dict[str, dict[str, Any]] = {}
            for pdu in pdus:
                await self._pdu(origin, pdu, results)
            for edu in edus:
                await self._edu(origin, edu)
            response = {"pdus": results}
            await self.store.put_received(origin, txn_id, response)
            return response

    def _check(self, origin: str, body: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if not isinstance(body, dict):
            raise bad_json("The transaction must be a JSON object")
        pdus = body.get("pdus")
        edus = body.get("edus", [])
        if not isinstance(pdus, list) or not all(isinstance(p, dict) for p in pdus):
            raise bad_json("'pdus' must be a list of objects")
        if not isinstance(edus, list) or not all(isinstance(e, dict) for e in edus):
            raise bad_json("'edus' must be a list of objects")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise invalid_param(
                f"A transaction can have at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
            )
        if "origin" in body and body["origin"] != origin:
            raise invalid_param("'origin' is not the server that sent the transaction")
        ts = body.get("origin_server_ts")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int)):
            raise bad_json("'origin_server_ts' must be an integer")
        return pdus, edus

    async def _pdu(self, origin: str, pdu: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
        room_id = pdu.get("room_id")
        room = await self.get_room(room_id) if isinstance(room_id, str) else None
        event_id: str | None = None
        if room is not None:
            try:
                event_id = compute_event_id(pdu, room.version)
            except Exception:  # not hashable (bad JSON values) or no event_id (v1-2)
                event_id = None
        if event_id is None:
            own = pdu.get("event_id")
            event_id = own if isinstance(own, str) and own.startswith("$") else None
        if event_id is None:
            log.info("Dropped an unnameable PDU from {origin}", origin=origin)
            return
        if room is None:
            results[event_id] = {"error": "Unknown room"}
            return
        if not await self.acl_allows(origin, room.room_id):
            results[event_id] = {"error": "The room's server ACL denies this server"}
            return
        if self.pdu_handler is None:
            results[event_id] = {"error": PDUS_NOT_ACCEPTED}
            return
        try:
            error = await self.pdu_handler(origin, room.version, event_id, pdu)
        except MatrixError as e:
            error = e.msg
        except Exception:
            log.failure("Processing PDU {event_id} from {origin} failed", event_id=event_id, origin=origin)
            error = "Internal error while processing the event"
        results[event_id] = {"error": error} if error else {}

    async def _edu(self, origin: str, edu: dict[str, Any]) -> None:
        edu_type, content = edu.get("edu_type"), edu.get("content")
        if not isinstance(edu_type, str) or not isinstance(content, dict):
            return
        handler = self.edu_handlers.get(edu_type)
        if handler is None:
            return
        try:
            await handler(origin, content)
        except Exception:
            log.failure("EDU {edu_type} from {origin} failed", edu_type=edu_type, origin=origin)
