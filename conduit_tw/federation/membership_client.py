"""
Membership changes of our users in rooms on other servers
(server-server-api "Joining Rooms", "Inviting to a room", "Leaving Rooms
(Rejecting Invites)", "Knocking upon a room"):

- L{RemoteMembership.join}: candidates are the C{via}/C{server_name}
  servers, the servers the alias resolved to, the room ID's server (room
  IDs of versions before 12 carry one) and the inviter's server; each is
  asked C{make_join} with every room version we support (C{ver=}); the
  template is completed (origin, timestamp, hashes, v1-2 event ID),
  signed and sent with C{send_join} v2. Every event of the answer's state
  and auth chain is checked (format, signatures with keys fetched
  concurrently, content hash, auth against its auth events); events that
  fail are dropped or kept rejected, and the join must pass the auth rules
  against the returned state. Then one batch stores the auth chain and
  state as outliers and the join as the room's first live event, with
  the returned state as the state before it. After 15 answers refusing
  our versions or 50 failing servers we give up (conduwuit's limits).
- L{RemoteMembership.leave}: rejecting an invite (or withdrawing a knock)
  for a room we are not in: make_leave / send_leave v2 via the inviter's
  server; if no server accepts, the rejection is recorded locally.
- L{RemoteMembership.knock}: make_knock / send_knock.
- L{RemoteMembership.invite}: our user invites a user of another server:
  the event is built here, sent with invite v2 to the invitee's server,
  and the copy it returns (with its signature checked) is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable
from urllib.parse import quote

from conduit_tw.errors import Codes, MatrixError, not_found
from conduit_tw.events.auth_rules import CREATE_KEY, AuthError, auth_types_for, check_auth
from conduit_tw.events.event import Event
from conduit_tw.events.redaction import redact_pdu
from conduit_tw.events.room_versions import (
    KNOWN_ROOM_VERSIONS,
    RoomVersion,
    UnsupportedRoomVersion,
    get_room_version,
)
from conduit_tw.events.signing import SignatureError, server_name_of
from conduit_tw.federation.errors import FederationError, RemoteError
from conduit_tw.federation.event_checks import (
    BadEvent,
    VerifyEvent,
    authorise_chain,
    check_all_signed,
    parse_pdu,
    room_of,
)
from conduit_tw.federation.keyring import min_valid_until_for
from conduit_tw.federation.membership_server import MembershipServlet
from conduit_tw.logging import get_logger
from conduit_tw.storage.events import OUTLIER_KIND
from conduit_tw.storage.stores.timeline import StoredEvent

if TYPE_CHECKING:
    from conduit_tw.federation.client import FederationClient
    from conduit_tw.handlers.events import EventHandler
    from conduit_tw.storage.events import EventStore

log = get_logger("conduit_tw.federation.membership_client")

_MEMBER = "m.room.member"
_V1 = "/_matrix/federation/v1"
_V2 = "/_matrix/federation/v2"

#: Give up after this many servers refused all our room versions.
MAX_UNSUPPORTED_VERSION_ANSWERS = 15
#: Give up after this many servers failed otherwise.
MAX_FAILING_SERVERS = 50

#: C{resolve_alias(alias) -> (room_id, servers)} (remote alias resolution).
ResolveAlias = Callable[[str], Awaitable[tuple[str, list[str]]]]


class JoinFailed(Exception):
    """One candidate server's join answer was unusable (the next one is tried)."""


def _q(value: str) -> str:
    return quote(value, safe="")


def _domain(identifier: str) -> str | None:
    try:
        return server_name_of(identifier)
    except SignatureError:
        return None


class RemoteMembership:
    """Our users' membership in rooms on other servers; see the module docstring."""

    def __init__(
        self,
        server_name: str,
        store: "EventStore",
        events: "EventHandler",
        servlet: MembershipServlet,
        federation: Callable[[], "FederationClient"],
        verify_event: VerifyEvent,
        verify_json_for_server: Callable[..., Awaitable[None]],
        clock_ms: Callable[[], int],
        *,
        allow_unstable_room_versions: bool = True,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.events = events
        self.servlet = servlet
        self.federation = federation
        self.verify_event = verify_event
        self.verify_json_for_server = verify_json_for_server
        self.clock_ms = clock_ms
        self.versions = [
            v.identifier for v in KNOWN_ROOM_VERSIONS.values()
            if v.stable or allow_unstable_room_versions
        ]
        #: C{resolve_alias(alias) -> (room_id, servers)} for aliases of
        #: other servers; None: such aliases are 404.
        self.resolve_alias: ResolveAlias | None = None

    def is_local(self, user_id: str) -> bool:
        """Whether a user ID belongs to this server."""
        return _domain(user_id) == self.server_name

    # ------------------------------------------------------------------
    # Candidates

    async def resolve(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """A remote alias's room ID and servers (404 without a resolver)."""
        if self.resolve_alias is None:
            raise not_found("Room alias %s is on another server" % room_id_or_alias)
        room_id, servers = await self.resolve_alias(room_id_or_alias)
        return room_id, list(servers)

    async def candidates(self, room_id: str, user_id: str, via: Iterable[str]) -> list[str]:
        """
        The servers to ask, in order: C{via}, the room ID's server (rooms
        before v12), the server of whoever invited the user.
        """
        out = list(via)
        domain = _domain(room_id)
        if domain:
            out.append(domain)
        inviter = await self.inviter(user_id, room_id)
        if inviter is not None:
            out.append(inviter)
        return [s for s in dict.fromkeys(out) if s and s != self.server_name]

    async def inviter(self, user_id: str, room_id: str) -> str | None:
        """The server of the sender of the user's pending invite or knock, if any."""
        rec = await self.store.membership_record(user_id, room_id)
        if rec is None or rec.membership not in ("invite", "knock"):
            return None
        event = await self.store.get_event_by_short(rec.shorteventid)
        return _domain(event.sender) if event is not None else None

    # ------------------------------------------------------------------
    # Building from a template

    def event_from_template(
        self, template: Any, version: RoomVersion, room_id: str, user_id: str, membership: str,
        content: dict[str, Any] | None = None,
    ) -> Event:
        """Complete and sign a make_* template (server-server-api "Joining Rooms")."""
        if not isinstance(template, dict):
            raise JoinFailed("no event template")
        tcontent = template.get("content")
        if (
            template.get("type") != _MEMBER or template.get("sender") != user_id
            or template.get("state_key") != user_id or template.get("room_id") != room_id
            or not isinstance(tcontent, dict) or tcontent.get("membership") != membership
        ):
            raise JoinFailed("the template is not a %s of %s in %s" % (membership, user_id, room_id))
        pdu = {k: v for k, v in template.items() if k not in ("hashes", "signatures", "unsigned")}
        new_content = dict(content or {})
        new_content["membership"] = membership
        via = tcontent.get("join_authorised_via_users_server")
        if membership == "join" and isinstance(via, str):
            new_content["join_authorised_via_users_server"] = via
        pdu["content"] = new_content
        pdu["origin"] = self.server_name
        pdu["origin_server_ts"] = self.clock_ms()
        if version.event_id_in_event:
            pdu["event_id"] = self.events.new_v1_event_id()
        event = self.events.sign_pdu(pdu, version)
        try:
            return parse_pdu(event.pdu, version)
        except BadEvent as e:
            raise JoinFailed(str(e)) from None

    async def _make(
        self, server: str, kind: str, room_id: str, user_id: str, versions: list[str] | None
    ) -> tuple[Any, RoomVersion]:
        args = {"ver": versions} if versions else None
        answer = await self.federation().get_json(
            server, "%s/make_%s/%s/%s" % (_V1, kind, _q(room_id), _q(user_id)), args
        )
        if not isinstance(answer, dict):
            raise JoinFailed("bad make_%s answer" % kind)
        version_id = answer.get("room_version", "1")
        try:
            version = get_room_version(version_id) if isinstance(version_id, str) else None
        except UnsupportedRoomVersion:
            version = None
        if version is None or (versions is not None and version.identifier not in versions):
            raise RemoteError(server, 400, Codes.INCOMPATIBLE_ROOM_VERSION, "unsupported version")
        return answer.get("event"), version

    # ------------------------------------------------------------------
    # Joining

    async def join(
        self,
        user_id: str,
        room_id: str,
        servers: Iterable[str],
        content: dict[str, Any] | None = None,
    ) -> str:
        """
        Join a room on other servers (see the module docstring); returns
        the room ID once the join is stored.

        @raise MatrixError: 404 when no server let us join (with the last
            refusal's errcode and message when one explained, e.g. 403).
        """
        candidates = await self.candidates(room_id, user_id, servers)
        unsupported = failing = 0
        last: MatrixError | None = None
        for server in candidates:
            try:
                template, version = await self._make(server, "join", room_id, user_id, self.versions)
                event = self.event_from_template(template, version, room_id, user_id, "join", content)
                answer = await self.federation().put_json(
                    server, "%s/send_join/%s/%s" % (_V2, _q(room_id), _q(event.event_id)), event.pdu
                )
                await self._accept_join(room_id, event, answer)
                return room_id
            except RemoteError as e:
                if e.errcode == Codes.INCOMPATIBLE_ROOM_VERSION:
                    unsupported += 1
                else:
                    failing += 1
                if e.errcode and e.code in (400, 403, 404):
                    last = MatrixError(e.code, e.errcode, e.error or str(e))
                log.info("Joining {room} via {server} failed: {e}", room=room_id, server=server, e=e)
            except (FederationError, JoinFailed) as e:
                failing += 1
                log.info("Joining {room} via {server} failed: {e}", room=room_id, server=server, e=e)
            if unsupported >= MAX_UNSUPPORTED_VERSION_ANSWERS or failing >= MAX_FAILING_SERVERS:
                break
        if last is not None and last.code == 403:
            raise last
        if unsupported and not failing:
            raise MatrixError(
                400, Codes.INCOMPATIBLE_ROOM_VERSION,
                "The room's version is not supported by this server",
            )
        raise not_found(
            "Could not join %s: no server in the room answered usefully%s"
            % (room_id, " (%s)" % last.msg if last is not None else "")
        )

    async def _accept_join(self, room_id: str, event: Event, answer: Any) -> StoredEvent:
        """Check a send_join v2 answer and store the room (module docstring)."""
        if not isinstance(answer, dict):
            raise JoinFailed("bad send_join answer")
        version = event.room_version
        returned = answer.get("event")
        if isinstance(returned, dict):
            # Restricted joins: the resident server's signature is added.
            try:
                signed = parse_pdu(returned, version)
            except BadEvent as e:
                raise JoinFailed(str(e)) from None
            if signed.event_id == event.event_id:
                event = signed
        state_pdus = answer.get("state")
        chain_pdus = answer.get("auth_chain")
        if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
            raise JoinFailed("send_join answer without state or auth_chain")
        parsed: dict[str, Event] = {}
        state_ids: set[str] = set()
        for pdus, is_state in ((chain_pdus, False), (state_pdus, True)):
            for pdu in pdus:
                try:
                    ev = parse_pdu(pdu, version)
                except BadEvent:
                    continue
                if room_of(ev) != room_id:
                    continue
                parsed.setdefault(ev.event_id, ev)
                if is_state and ev.is_state():
                    state_ids.add(ev.event_id)
        bad = await check_all_signed([*parsed.values(), event], self.verify_event)
        if event.event_id in bad:
            raise JoinFailed("our join came back with " + bad[event.event_id])
        for event_id, why in bad.items():
            log.info("Dropping {event_id} from a send_join answer: {why}", event_id=event_id, why=why)
            parsed.pop(event_id, None)
            state_ids.discard(event_id)
        rejected = authorise_chain(parsed)
        state: dict[tuple[str, str], str] = {}
        for event_id in state_ids:
            if event_id not in rejected:
                state[parsed[event_id].state_pair()] = event_id
        create_id = state.get(CREATE_KEY)
        if create_id is None:
            raise JoinFailed("the returned state has no valid create event")
        create = parsed[create_id]
        if create.content.get("room_version", "1") != version.identifier:
            raise JoinFailed("the create event names another room version")
        auth_state = {
            k: parsed[state[k]] for k in auth_types_for(event) | {CREATE_KEY} if k in state
        }
        try:
            check_auth(event, auth_state)
        except AuthError as e:
            raise JoinFailed("our join fails the auth rules: " + e.message) from None
        async with self.events.linearizer.queue(room_id):
            if await self.store.room_exists(room_id):
                # Another of our users joined meanwhile: keep that state.
                current = dict(await self.store.current_state_ids(room_id))
            else:
                current = dict(state)
            current[event.state_pair()] = event.event_id
            txn = self.store.txn()
            for ev in sorted(parsed.values(), key=lambda e: e.depth):
                ev.rejected = ev.event_id in rejected
                await self.store.persist(ev, kind=OUTLIER_KIND, txn=txn)
            stored = await self.store.persist(
                event, state_before=state, current_state=current, txn=txn
            )
            await txn.commit()
        return stored

    # ------------------------------------------------------------------
    # Leaving (rejecting invites, withdrawing knocks)

    async def leave(self, user_id: str, room_id: str, content: dict[str, Any] | None = None) -> None:
        """
        Reject an invite or withdraw a knock in a room we are not in:
        make_leave / send_leave v2 via the inviter's and the room's servers;
        if none accepts, the leave is recorded here only (the user is no
        longer shown the invite).
        """
        for server in await self.candidates(room_id, user_id, ()):
            try:
                template, version = await self._make(server, "leave", room_id, user_id, None)
                event = self.event_from_template(template, version, room_id, user_id, "leave", content)
                await self.federation().put_json(
                    server, "%s/send_leave/%s/%s" % (_V2, _q(room_id), _q(event.event_id)), event.pdu
                )
            except (FederationError, JoinFailed) as e:
                log.info("Leaving {room} via {server} failed: {e}", room=room_id, server=server, e=e)
                continue
            await self.store.persist_out_of_room_membership(event)
            return
        await self._local_leave(user_id, room_id, content)

    async def _local_leave(self, user_id: str, room_id: str, content: dict[str, Any] | None) -> None:
        """A leave built on the invite alone, stored but sent to nobody."""
        rec = await self.store.membership_record(user_id, room_id)
        invite = await self.store.get_event_by_short(rec.shorteventid) if rec is not None else None
        if invite is None:
            raise not_found("Unknown room " + room_id)
        version = invite.room_version
        new_content = dict(content or {})
        new_content["membership"] = "leave"
        pdu: dict[str, Any] = {
            "room_id": room_id, "sender": user_id, "type": _MEMBER, "state_key": user_id,
            "content": new_content, "origin_server_ts": self.clock_ms(),
            "depth": invite.depth + 1, "origin": self.server_name,
        }
        if version.event_id_in_event:
            ref = [invite.event_id, {"sha256": invite.pdu.get("hashes", {}).get("sha256", "")}]
            pdu["prev_events"] = [ref]
            pdu["auth_events"] = [ref]
            pdu["event_id"] = self.events.new_v1_event_id()
        else:
            pdu["prev_events"] = [invite.event_id]
            pdu["auth_events"] = [invite.event_id]
        await self.store.persist_out_of_room_membership(self.events.sign_pdu(pdu, version))

    async def knock(
        self, user_id: str, room_id: str, servers: Iterable[str], content: dict[str, Any] | None = None
    ) -> str:
        """Knock on a room on other servers (make_knock / send_knock)."""
        last: MatrixError | None = None
        for server in await self.candidates(room_id, user_id, servers):
            try:
                template, version = await self._make(server, "knock", room_id, user_id, self.versions)
                event = self.event_from_template(template, version, room_id, user_id, "knock", content)
                answer = await self.federation().put_json(
                    server, "%s/send_knock/%s/%s" % (_V1, _q(room_id), _q(event.event_id)), event.pdu
                )
            except RemoteError as e:
                if e.errcode and e.code in (400, 403):
                    last = MatrixError(e.code, e.errcode, e.error or str(e))
                continue
            except (FederationError, JoinFailed):
                continue
            state = answer.get("knock_room_state") if isinstance(answer, dict) else None
            try:
                stripped_state = await self.servlet.checked_room_state(state, room_id, version)
            except MatrixError:
                stripped_state = []
            await self.store.persist_out_of_room_membership(event, stripped_state)
            return room_id
        if last is not None:
            raise last
        raise not_found("Could not knock on %s: no server in the room answered" % room_id)

    # ------------------------------------------------------------------
    # Inviting users of other servers

    async def invite(
        self, sender: str, room_id: str, target: str, content: dict[str, Any]
    ) -> StoredEvent:
        """
        Invite a user of another server (server-server-api "Inviting to a
        room"): build the invite, PUT it to the invitee's server with the
        room's stripped state, check the signature it added, store it and
        send it to the room's other servers.

        @raise MatrixError: 403 if the auth rules refuse the invite; the
            invitee server's refusal (its status and errcode); 502 when it
            cannot be reached or answers nonsense.
        """
        room = await self.events.get_room_or_404(room_id)
        version = room.version
        target_server = server_name_of(target)
        async with self.events.linearizer.queue(room_id):
            event = await self.events.build(room, sender, _MEMBER, content, target)
            body = {
                "room_version": version.identifier,
                "event": event.pdu,
                "invite_room_state": await self.servlet.stripped_state(room_id, sender),
            }
            try:
                answer = await self.federation().put_json(
                    target_server,
                    "%s/invite/%s/%s" % (_V2, _q(room_id), _q(event.event_id)), body,
                )
                returned = parse_pdu(answer.get("event") if isinstance(answer, dict) else None, version)
                if returned.event_id != event.event_id:
                    raise BadEvent("the invite came back changed")
                await self.verify_json_for_server(
                    target_server, redact_pdu(returned.pdu, version),
                    min_valid_until_for(version, event.origin_server_ts),
                )
            except RemoteError as e:
                raise MatrixError(
                    e.code if 400 <= e.code < 500 else 502, e.errcode or Codes.UNKNOWN,
                    "%s refused the invite: %s" % (target_server, e.error or e),
                ) from None
            except (FederationError, BadEvent, SignatureError) as e:
                raise MatrixError(502, Codes.UNKNOWN, "Inviting %s failed: %s" % (target, e)) from None
            stored, durable = await self.store.persist_apply(returned)
        await durable
        others = await self.servlet.servers_in_room(room_id)
        await self.servlet.send_out(room_id, stored, others - {target_server})
        return stored

