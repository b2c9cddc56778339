"""
The federation sender: outgoing transactions (server-server-api
"Transactions", transactions.yaml C{PUT /_matrix/federation/v1/send/{txnId}}).

- One queue per destination, in the database
  (storage/stores/federation_queue.py): PDUs by event ID and EDUs, in the
  order they were queued, so a restart loses nothing. Typing EDUs are
  ephemeral (queued in memory only: stale after seconds anyway).
- A transaction carries at most L{MAX_PDUS} PDUs and L{MAX_EDUS} EDUs
  ("Transactions are limited in size; they can have at most 50 PDUs and
  100 EDUs"), taken from the head of the queue in order.
- One transaction in flight per destination. "The sending server must wait
  and retry for a 200 OK response before sending a transaction with a
  different txnId": a failed transaction is retried as it was (same ID,
  same content); its items leave the queue only after a 200.
- Retries back off exponentially per destination (L{INITIAL_BACKOFF_S},
  doubling, capped by C{sender_retry_backoff_limit}), reset by a success
  and cut short by L{FederationSender.destination_is_up} (the inbound side
  calls it when the destination contacts us).
- Start-up (L{FederationSender.start}): with C{startup_netburst}, every
  destination with a queue is sent to at once, after dropping all but the
  newest C{startup_netburst_keep} queued EDUs of each (-1 keeps
  everything; PDUs are never dropped, losing them would break rooms).
  Without it, a queue waits until something new is queued for its
  destination (conduwuit's meaning of both keys).

Sending goes through C{put_json(destination, path, body, timeout=...)}
(the signed federation client); any exception is a failed attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from twisted.internet.interfaces import IReactorTime

from conduit_tw.logging import get_logger
from conduit_tw.storage.stores.federation_queue import FederationQueueStore, QueuedItem
from conduit_tw.util.transaction_queue import QueueState, Transaction, TransactionQueues

log = get_logger("conduit_tw.federation.sender")

MAX_PDUS = 50
MAX_EDUS = 100
#: The first retry delay; each failure doubles it up to the configured limit.
INITIAL_BACKOFF_S = 10.0

PutJson = Callable[..., Awaitable[Any]]


@dataclass
class _Destination(QueueState):
    """What the sender knows about one destination, in memory."""

    #: Ephemeral (unpersisted) EDUs not yet in a transaction.
    ephemeral: list[dict[str, Any]] = field(default_factory=list)


class FederationSender(TransactionQueues[_Destination]):
    """See the module docstring."""

    initial_backoff_s = INITIAL_BACKOFF_S
    what = "destination"

    def __init__(
        self,
        store: FederationQueueStore,
        put_json: PutJson,
        get_pdu: Callable[[str], Awaitable[dict[str, Any] | None]],
        reactor: IReactorTime,
        clock_ms: Callable[[], int],
        server_name: str,
        *,
        backoff_limit_s: float = 86400,
        netburst: bool = True,
        netburst_keep: int = 50,
        timeout_s: float | None = None,
        enabled: bool = True,
        refused: Callable[[str], bool] = lambda destination: False,
    ) -> None:
        super().__init__(reactor, backoff_limit_s, log)
        self.store = store
        #: C{put_json(destination, path, body, *, timeout=None) -> Awaitable[dict]}.
        self.put_json = put_json
        self.get_pdu = get_pdu
        self.clock_ms = clock_ms
        self.server_name = server_name
        self.netburst = netburst
        self.netburst_keep = netburst_keep
        self.timeout_s = timeout_s
        #: C{allow_federation}: when false nothing is queued or sent.
        self.enabled = enabled
        #: Destinations never sent to (C{forbidden_remote_server_names}).
        self.refused = refused

    # -- lifecycle

    async def start(self) -> None:
        """Load the queued destinations and burst them (see the module docstring)."""
        destinations = await self.store.destinations()
        if not self.enabled or not self.netburst:
            return
        for destination in destinations:
            if self.netburst_keep >= 0:
                dropped = await self.store.trim_edus(destination, self.netburst_keep)
                if dropped:
                    log.info(
                        "Dropped {n} old queued EDUs for {dest} (startup_netburst_keep)",
                        n=dropped, dest=destination,
                    )
            self._kick(destination)

    def _new_state(self) -> _Destination:
        return _Destination()

    # -- queueing

    def _targets(self, destinations: Iterable[str]) -> list[str]:
        if not self.enabled or self._stopped:
            return []
        return sorted(
            {d for d in destinations if d and d != self.server_name and not self.refused(d)}
        )

    async def send_edu(
        self, destinations: Iterable[str], edu_type: str, content: dict[str, Any],
        *, persist: bool = True,
    ) -> None:
        """
        Queue an EDU for each destination (ourselves excluded) and send.
        C{persist=False} keeps it in memory only (typing).
        """
        targets = self._targets(destinations)
        if not targets:
            return
        edu = {"edu_type": edu_type, "content": content}
        if persist:
            await self.store.add_edu(targets, edu)
        for destination in targets:
            if not persist:
                ephemeral = self._state(destination).ephemeral
                ephemeral.append(edu)
                # A destination that is down must not grow it forever:
                # old ephemeral EDUs are stale anyway.
                del ephemeral[:-MAX_EDUS]
            self._kick(destination)

    def queue_pdu(self, txn: Any, destinations: Iterable[str], event_id: str) -> list[str]:
        """
        Queue a PDU in the event's own store transaction C{txn}; returns
        the destinations to L{kick} once C{txn} is durable.
        """
        targets = self._targets(destinations)
        if targets:
            self.store.queue_pdu(txn, targets, event_id)
        return targets

    async def send_pdu(self, room_id: str, event: Any, destinations: Iterable[str]) -> None:
        """
        Queue an event that is already stored (one a remote server sent us
        through send_join/send_leave/send_knock, for the room's other
        servers) and send it.
        """
        targets = self._targets(destinations)
        if targets:
            await self.store.add_pdu(targets, event.event_id)
            self.kick(targets)

    def kick(self, destinations: Iterable[str]) -> None:
        """Send what is queued for these destinations (unless backing off)."""
        for destination in destinations:
            self._kick(destination)

    # -- sending

    def destination_is_up(self, destination: str) -> None:
        """
        The destination contacted us: forget its backoff and retry now
        if a retry was waiting.
        """
        state = self._states.get(destination)
        if state is None or self._stopped:
            return
        state.backoff_s = 0.0
        if state.retry is not None and state.retry.active():
            state.retry.cancel()
            state.retry = None
            self._kick(destination)

    def backing_off(self, destination: str) -> bool:
        """Whether a retry of the destination is scheduled."""
        state = self._states.get(destination)
        return state is not None and state.retry is not None and state.retry.active()

    async def _run(self, destination: str, state: _Destination) -> None:
        while not self._stopped:
            state.dirty = False
            txn = state.pending or await self._next_transaction(destination, state)
            if txn is None:
                if state.dirty:
                    continue
                return
            if self._stopped:
                return
            state.pending = txn
            try:
                await self.put_json(
                    destination, "/_matrix/federation/v1/send/" + txn.txn_id, txn.body,
                    timeout=self.timeout_s,
                )
            except Exception as e:
                if not self._stopped:
                    self._failed(destination, state, e)
                return
            if self._stopped:
                return
            state.pending = None
            state.backoff_s = 0.0
            await self.store.remove(txn.keys)

    async def _next_transaction(self, destination: str, state: _Destination) -> Transaction | None:
        items: list[QueuedItem] = await self.store.peek(destination, MAX_PDUS, MAX_EDUS)
        pdus: list[dict[str, Any]] = []
        edus: list[dict[str, Any]] = []
        for item in items:
            if item.event_id is not None:
                pdu = await self.get_pdu(item.event_id)
                if pdu is not None:  # gone (purged): nothing to send
                    pdus.append(pdu)
            elif item.edu is not None:
                edus.append(item.edu)
        room = MAX_EDUS - len(edus)
        if room > 0 and state.ephemeral:
            edus.extend(state.ephemeral[:room])
            del state.ephemeral[:room]
        keys = [item.key for item in items]
        if not pdus and not edus:
            if keys:  # only vanished PDUs
                await self.store.remove(keys)
                state.dirty = True
            return None
        body: dict[str, Any] = {
            "origin": self.server_name,
            "origin_server_ts": self.clock_ms(),
            "pdus": pdus,
        }
        if edus:
            body["edus"] = edus
        return Transaction(await self.store.next_txn_id(self.clock_ms()), body, keys)
