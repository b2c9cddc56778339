"""
L{HomeServer}: the one object that owns the config, the database, the
stores and the handlers, wired explicitly in its constructor (no globals,
no getter per component). It is the only composition root: each handler
receives its own dependencies (stores, handlers, clock, config values),
never the HomeServer, and hooks between handlers are registered here
(docs/architecture.md, "Wiring"). The HTTP layer receives it and calls
handlers.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from conduit_tw.api import keys, wellknown
from conduit_tw.api.client import account as account_api
from conduit_tw.api.client import capabilities as capabilities_api
from conduit_tw.api.client import devices as devices_api
from conduit_tw.api.client import login as login_api
from conduit_tw.api.client import profile as profile_api
from conduit_tw.api.client import register as register_api
from conduit_tw.api.client import versions
from conduit_tw.api.client import threepid as threepid_api
from conduit_tw.api.federation import version
from conduit_tw.api.resource import MatrixResource
from conduit_tw.api.router import Router
from conduit_tw.config import Config
from conduit_tw.handlers.account import AccountHandler
from conduit_tw.handlers.auth import Auth
from conduit_tw.handlers.devices import DeviceHandler
from conduit_tw.handlers.login import LoginHandler
from conduit_tw.handlers.passwords import Passwords, make_hasher
from conduit_tw.handlers.profile import ProfileHandler
from conduit_tw.handlers.ratelimit import RateLimits
from conduit_tw.handlers.auto_join import AutoJoin
from conduit_tw.handlers.registration import RegistrationHandler, RegistrationSettings
from conduit_tw.handlers.uia import PASSWORD, UIA
from conduit_tw.handlers.server_keys import ServerKeys
from conduit_tw.logging import get_logger
from conduit_tw.notifier import Notifier
from conduit_tw.storage.database import database_ready, open_database
from conduit_tw.storage.interfaces import IKeyValueDatabase
from conduit_tw.storage.stores.globals import GlobalsStore
from conduit_tw.storage.stores.devices import DeviceStore
from conduit_tw.storage.stores.tokens import TokenStore
from conduit_tw.storage.stores.users import UserStore
# -- account data, push, presence, typing (handlers/{account_data,filtering,pusher,presence,typing})
from conduit_tw.api.client import account_data as account_data_api
from conduit_tw.api.client import filter as filter_api
from conduit_tw.api.client import presence as presence_api
from conduit_tw.api.client import push_rules as push_rules_api
from conduit_tw.api.client import pushers as pushers_api
from conduit_tw.api.client import tags as tags_api
from conduit_tw.api.client import typing as typing_api
from conduit_tw.handlers.account_data import AccountDataHandler, PushRulesHandler
from conduit_tw.handlers.filtering import FilterHandler
from conduit_tw.handlers.presence import PresenceHandler
from conduit_tw.handlers.pusher import PusherHandler
from conduit_tw.handlers.typing import TypingHandler
from conduit_tw.http.dns import DNSResolver
from conduit_tw.http.lazy import LazyOutgoingHTTPClient
from conduit_tw.storage.stores.account_data import AccountDataStore
from conduit_tw.storage.stores.filters import FilterStore
from conduit_tw.storage.stores.presence import PresenceStore
from conduit_tw.storage.stores.push_rules import PushRulesStore
from conduit_tw.storage.stores.pushers import PusherStore
# -- rooms and messaging
from conduit_tw.api.client import membership as membership_api
from conduit_tw.api.client import rooms as rooms_api
from conduit_tw.handlers.events import EventHandler
from conduit_tw.handlers.membership import MembershipHandler
from conduit_tw.handlers.rooms import RoomCreationHandler, RoomSettings
from conduit_tw.handlers.serialize import EventSerializer
from conduit_tw.handlers.visibility import Visibility
from conduit_tw.storage.events import EventStore
from conduit_tw.storage.stores.aliases import AliasStore
# -- room history, upgrades, reports (handlers/{room_history,room_upgrade,reports})
from conduit_tw.api.client import reporting as reporting_api
from conduit_tw.api.client import room_history as room_history_api
from conduit_tw.api.client import room_upgrades as room_upgrades_api
from conduit_tw.handlers.reports import ReportHandler
from conduit_tw.handlers.room_history import RoomHistoryHandler
from conduit_tw.handlers.room_upgrade import RoomUpgradeHandler
from conduit_tw.storage.stores.reports import ReportStore
# -- aliases and the published room directory (handlers/directory.py)
from conduit_tw.api.client import directory as directory_api
from conduit_tw.handlers.directory import DirectoryHandler
from conduit_tw.storage.stores.directory import DirectoryStore
# -- sync, receipts, notifications (handlers/{sync,sync_rooms,receipts,notifications})
from conduit_tw.api.client import notifications as notifications_api
from conduit_tw.api.client import receipts as receipts_api
from conduit_tw.api.client import sync as sync_api
from conduit_tw.handlers.notifications import NotificationsHandler
from conduit_tw.handlers.receipts import ReceiptsHandler
from conduit_tw.handlers.sync import SyncHandler
from conduit_tw.handlers.sync_rooms import RoomSync
from conduit_tw.storage.stores.notifications import NotificationStore
from conduit_tw.storage.stores.receipts import ReceiptStore
# -- federation keys (federation/keyring.py, api/keys.py)
from conduit_tw.federation.keyring import KeyRing
from conduit_tw.storage.stores.server_keys import ServerKeyStore
# -- federation transport (federation/{client,discovery,auth,xmatrix,acl})
from conduit_tw.federation.auth import FederationAuth
from conduit_tw.federation.client import FederationClient
# -- media (handlers/{media,thumbnailer,url_preview}, api/media.py)
from conduit_tw.api import media as media_api
from conduit_tw.handlers.media import MediaHandler
from conduit_tw.handlers.ratelimit import RateLimiter
from conduit_tw.handlers.url_preview import URLPreviewer
from conduit_tw.storage.stores.media import MediaStore
from conduit_tw.storage.stores.media_files import MediaFiles
# -- housekeeping (util/periodic.py, handlers/{housekeeping,media_retention}.py)
from conduit_tw.handlers.housekeeping import Housekeeping
from conduit_tw.handlers.media_retention import MediaRetention
from conduit_tw.util.periodic import PeriodicTasks
# -- JWT login (handlers/jwt_login.py)
from conduit_tw.handlers.jwt_login import JWTLogin
# -- key backup (handlers/key_backup.py)
from conduit_tw.api.client import key_backup as key_backup_api
from conduit_tw.handlers.key_backup import KeyBackupHandler
from conduit_tw.storage.stores.key_backup import KeyBackupStore
# -- end-to-end encryption (handlers/{e2e_keys,to_device,device_lists,sync_e2ee})
from conduit_tw.api.client import e2e_keys as e2e_keys_api
from conduit_tw.api.client import to_device as to_device_api
from conduit_tw.handlers.device_lists import DeviceListTracker
from conduit_tw.handlers.e2e_keys import E2EKeysHandler
from conduit_tw.handlers.sync_e2ee import SyncE2EE
from conduit_tw.handlers.to_device import ToDeviceHandler
from conduit_tw.storage.stores.device_lists import DeviceListStore
from conduit_tw.storage.stores.e2e_keys import E2EKeyStore
from conduit_tw.storage.stores.to_device import ToDeviceStore
# -- federation sender (federation/{sender,transactions,edu}.py)
from conduit_tw.api.federation import send as federation_send_api
from conduit_tw.federation.edu import FederationEdus
from conduit_tw.federation.sender import FederationSender
from conduit_tw.federation.transactions import TransactionHandler
from conduit_tw.storage.stores.federation_queue import FederationQueueStore
# -- federated rooms (federation/{pdu_checks,pdu_pipeline,missing_events,event_serving})
from conduit_tw.api.federation import events as federation_events_api
from conduit_tw.federation.event_serving import EventServing
from conduit_tw.federation.missing_events import RemoteEvents
from conduit_tw.federation.pdu_pipeline import PduPipeline
# -- federation queries (handlers/remote_queries, api/federation/{query,public_rooms})
from conduit_tw.api.federation import public_rooms as federation_public_rooms_api
from conduit_tw.api.federation import query as federation_query_api
from conduit_tw.handlers.remote_queries import RemoteQueries
# -- federation media (handlers/remote_media.py, api/federation/media.py)
from conduit_tw.api.federation import media as federation_media_api
from conduit_tw.handlers.remote_media import RemoteMediaFetcher
# -- federated membership (federation/membership_{server,client}.py, api/federation/membership.py)
from conduit_tw.api.federation import membership as federation_membership_api
from conduit_tw.federation.membership_client import RemoteMembership
from conduit_tw.federation.membership_server import MembershipServlet
# -- federation e2ee (federation/e2ee.py, api/federation/user_keys.py)
from conduit_tw.api.federation import user_keys as federation_user_keys_api
from conduit_tw.federation.e2ee import FederationE2EE
from conduit_tw.storage.stores.federation_devices import FederationDeviceStore
# -- admin room (handlers/admin_{room,commands,groups}, docs/admin.md)
from conduit_tw.api.client import admin as admin_api
# -- shared-secret registration (handlers/shared_secret.py, api/synapse_admin.py)
from conduit_tw.api import synapse_admin as synapse_admin_api
from conduit_tw.handlers.shared_secret import SharedSecretRegistration
from conduit_tw.handlers.admin_commands import Group
from conduit_tw.handlers.admin_room import AdminRoom, AdminRoomDeps
from conduit_tw.logging import configure as configure_logging
from conduit_tw.storage.stores.admin import AdminStore
from conduit_tw.storage.stores.registration_tokens import RegistrationTokenStore
# -- federated rooms 2 (federation/{backfill,hierarchy,timestamp}.py)
from conduit_tw.api.federation import hierarchy as federation_hierarchy_api
from conduit_tw.api.federation import timestamp as federation_timestamp_api
from conduit_tw.federation.backfill import Backfiller
from conduit_tw.federation.hierarchy import SpaceHierarchy as FederationHierarchy
from conduit_tw.federation.timestamp import TimestampToEvent
# -- relations and search (handlers/{relations,search}, api/client/{relations,search})
from conduit_tw.api.client import relations as relations_api
from conduit_tw.api.client import search as search_api
from conduit_tw.handlers.relations import RelationsHandler
from conduit_tw.handlers.search import SearchHandler
from conduit_tw.storage.stores.relations import RelationStore
from conduit_tw.storage.stores.search import SearchStore
# -- spaces, directory, voip, openid (handlers/{spaces,room_summary,user_directory,mutual_rooms,voip,openid})
from conduit_tw.api.client import openid as openid_api
from conduit_tw.api.client import spaces as spaces_api
from conduit_tw.api.client import user_directory as user_directory_api
from conduit_tw.api.client import voip as voip_api
from conduit_tw.handlers.mutual_rooms import MutualRooms
from conduit_tw.handlers.openid import OpenIdHandler
from conduit_tw.handlers.room_summary import RoomSummaries
from conduit_tw.handlers.spaces import SpaceHierarchy
from conduit_tw.handlers.user_directory import UserDirectory
from conduit_tw.handlers.voip import CallProtection, TurnHandler, TurnSettings
from conduit_tw.storage.stores.openid import OpenIdTokenStore
from conduit_tw.storage.stores.user_directory import UserDirectoryStore
# -- appservices (appservice/, handlers/appservices.py, api/client/appservice.py)
from conduit_tw.api.client import appservice as appservice_api
from conduit_tw.appservice.bridge import BridgeAPI
from conduit_tw.appservice.bridge_host import BridgeHost
from conduit_tw.appservice.client import AppserviceClient
from conduit_tw.appservice.sender import AppserviceSender
from conduit_tw.handlers.appservices import AppserviceHandler
from conduit_tw.storage.stores.appservices import AppserviceStore

log = get_logger("conduit_tw.homeserver")

#: Modules that mount endpoints: each has C{register(router, hs)}.
API_MODULES: list[Any] = [
    account_data_api, tags_api, filter_api, push_rules_api, pushers_api, presence_api, typing_api,
    versions, threepid_api, wellknown, keys, version,
    register_api, login_api, account_api, devices_api, profile_api, capabilities_api,
    rooms_api, membership_api,
    room_history_api, room_upgrades_api, reporting_api,
    directory_api,
    sync_api, receipts_api, notifications_api,
    media_api,
    key_backup_api,
    e2e_keys_api, to_device_api,
    federation_send_api,
    federation_events_api,
    federation_query_api, federation_public_rooms_api,
    federation_media_api,
    federation_membership_api,
    federation_user_keys_api,
    admin_api, synapse_admin_api,
    federation_timestamp_api, federation_hierarchy_api,
    relations_api, search_api,
    voip_api, openid_api, spaces_api, user_directory_api,
    appservice_api,
]


class HomeServer:
    """
    The server's components.

    @ivar config: the loaded configuration.
    @ivar reactor: the reactor (or a clock in tests) used for time.
    @ivar db: the key-value database.
    """

    def __init__(
        self,
        config: Config,
        reactor: IReactorTime,
        db: IKeyValueDatabase | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.server_name = config.server_name
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        if db is None:
            db = open_database(
                config.database_backend, config.database_path, config.database_options()
            )
        self.db = db
        self.globals = GlobalsStore(db)
        self.notifier = Notifier(reactor)
        # -- stream positions (issue 19): /sync's "now" never passes a
        # position whose write is still running (storage/stores/globals.py).
        self.notifier.committed_upto = self.globals.committed_upto
        self.globals.on_advance = self.notifier.advance
        self.tokens = TokenStore(db)
        self.auth = Auth(
            self.tokens, self.clock_ms,
            allow_query_token=config.allow_access_token_query_parameter,
        )
        # -- accounts and sessions (handlers/{uia,registration,login,...})
        self.users = UserStore(db)
        self.device_store = DeviceStore(db)
        self.ratelimit = RateLimits(config, self.users, self.clock_ms)
        self.passwords = Passwords(
            reactor,
            make_hasher(config.password_hash_memory_kib, config.password_hash_iterations),
            concurrency=config.password_hash_concurrency,
            queue_limit=config.password_hash_queue,
        )
        self.uia = UIA(self.clock_ms)
        self.devices = DeviceHandler(
            self.device_store, self.tokens, self.clock_ms, config.allow_device_name_federation
        )
        self.auth.seen = self.devices.seen
        self.login = LoginHandler(
            self.server_name, self.users, self.tokens, self.devices, self.passwords,
            self.clock_ms, wellknown.client_document(self),
        )
        self.login.failed_login_limiter = self.ratelimit.failed_login
        self.uia.checkers[PASSWORD] = self.login.password_stage
        self.registration = RegistrationHandler(
            RegistrationSettings(
                server_name=config.server_name,
                allow_registration=config.allow_registration,
                registration_token=config.registration_token,
                registration_token_file=config.registration_token_file,
                allow_guest_registration=config.allow_guest_registration,
                log_guest_registrations=config.log_guest_registrations,
                forbidden_usernames=tuple(config.forbidden_usernames),
                new_user_displayname_suffix=config.new_user_displayname_suffix,
            ),
            self.users, self.tokens, self.devices, self.passwords, self.uia,
            self.login, self.clock_ms,
        )
        self.profile = ProfileHandler(self.server_name, self.users)
        self.account = AccountHandler(self.users, self.devices, self.passwords, self.uia)
        self.server_keys: ServerKeys
        # -- account data, filters, push, presence, typing
        self.account_data = AccountDataHandler(AccountDataStore(db), self.globals, self.notifier)
        self.push_rules = PushRulesHandler(
            PushRulesStore(db), self.account_data, self.globals, self.notifier,
            max_size=config.max_account_data_size,
        )
        self.account_data.render_push_rules = self.push_rules.render_account_data
        self.filters = FilterHandler(FilterStore(db))
        # -- outgoing network: one DNS resolver (dns_* keys, its cache) for
        # every outgoing client; push gateways get their own pool
        # (pusher_idle_timeout).
        self.dns = DNSResolver(reactor, config)
        #: The outgoing HTTP client (ip_range_denylist, TLS policy, caps, proxy).
        self.http_client = LazyOutgoingHTTPClient(reactor, config, dns=self.dns)
        self.push_http_client = LazyOutgoingHTTPClient(
            reactor, config, dns=self.dns, idle_timeout=config.pusher_idle_timeout
        )
        self.pushers = PusherHandler(
            PusherStore(db), reactor, self.clock_ms, self.push_http_client
        )
        self.devices.on_devices_deleted.append(self.pushers.devices_deleted)
        self.account.on_deactivated.append(self.pushers.user_deactivated)
        self.presence = PresenceHandler(
            PresenceStore(db), self.globals, self.notifier, self.users, reactor, self.clock_ms,
            self.server_name, enabled=config.allow_local_presence,
            idle_timeout_s=config.presence_idle_timeout_s,
            timeout_remote=config.presence_timeout_remote_users,
            offline_timeout_s=config.presence_offline_timeout_s,
        )
        self.typing = TypingHandler(
            reactor, self.notifier, self.clock_ms,
            config.typing_client_timeout_min_s, config.typing_client_timeout_max_s,
        )
        # -- rooms and messaging (storage/events.py, handlers/{events,rooms,membership})
        cache_modifier = config.conduit_cache_capacity_modifier
        self.event_store = EventStore(
            db, self.globals, self.notifier, cache_modifier, config.pdu_cache_capacity
        )
        self.aliases_store = AliasStore(db)
        self.events = EventHandler(self.server_name, self.event_store, self.users, self.clock_ms)
        self.visibility = Visibility(self.event_store, cache_modifier)
        self.serializer = EventSerializer(self.event_store, self.clock_ms)
        self.room_creation = RoomCreationHandler(
            self.server_name,
            RoomSettings(
                allow_room_creation=config.allow_room_creation,
                default_room_version=config.default_room_version,
                allow_unstable_room_versions=config.allow_unstable_room_versions,
                forbidden_alias_names=tuple(config.forbidden_alias_names),
            ),
            self.event_store, self.events, self.aliases_store, self.users, self.clock_ms,
        )
        self.membership = MembershipHandler(
            self.server_name, self.event_store, self.events, self.aliases_store, self.users,
            block_non_admin_invites=config.block_non_admin_invites,
        )
        self.room_history = RoomHistoryHandler(
            self.event_store, self.visibility, self.filters, self.account_data, self.serializer
        )
        self.room_upgrades = RoomUpgradeHandler(
            self.server_name, self.event_store, self.events, self.room_creation,
            self.aliases_store,
            allow_unstable_room_versions=config.allow_unstable_room_versions,
        )
        self.reports = ReportHandler(
            self.server_name, ReportStore(db), self.event_store, self.users, self.visibility,
            self.clock_ms,
        )
        self.directory_store = DirectoryStore(db)
        self.directory = DirectoryHandler(
            self.server_name, self.directory_store, self.event_store, self.aliases_store,
            self.users, self.events, self.visibility,
            forbidden_alias_names=config.forbidden_alias_names,
            lockdown_public_room_directory=config.lockdown_public_room_directory,
            cache_modifier=cache_modifier,
        )
        self.events.validators.append(self.directory.check_canonical_alias)
        self.room_creation.before_room_created.append(self.directory.check_create_publish)
        self.room_creation.on_room_created.append(self.directory.room_created)
        self.room_upgrades.on_room_upgraded.append(self.directory.room_upgraded)
        self.profile.on_profile_changed.append(self.membership.profile_changed)
        self.account.on_deactivated.append(self.membership.deactivated)
        self.auto_join = AutoJoin(
            self.membership.join, config.auto_join_rooms, config.allow_guests_auto_join_rooms
        )
        self.registration.on_registered.append(self.auto_join.user_registered)
        # -- sync, receipts, push counts
        self.receipts = ReceiptsHandler(
            ReceiptStore(db, self.globals, cache_modifier), self.event_store, self.visibility,
            self.account_data, self.notifier, self.clock_ms,
        )
        self.notifications = NotificationsHandler(
            NotificationStore(db), self.event_store, self.membership.is_local, self.push_rules,
            self.account_data, self.receipts, self.pushers, self.serializer, reactor,
            cache_modifier,
        )
        self.receipts.on_read_changed.append(self.notifications.invalidate)
        self.event_store.persist_hooks.append(self.notifications.event_persisted)
        self.sync = SyncHandler(
            self.event_store, self.notifier, reactor,
            RoomSync(
                self.event_store, self.visibility, self.typing, self.receipts,
                self.notifications, self.serializer, cache_modifier,
            ),
            self.filters, self.account_data, self.presence, self.typing, self.receipts,
            cache_modifier,
        )
        self.event_store.membership_hooks.append(self.sync.forget_user_rooms)
        # Typing and presence are used by sync and need its membership
        # answers: the cycle is broken with callables assigned here.
        self.typing.is_joined = self.sync.is_joined
        self.presence.shares_room = self.sync.shares_room
        self.presence.rooms_of = self.sync.rooms_of
        # -- federation keys: other servers' keys, fetched through the
        # federation client (looked up at each fetch, so it may be built
        # after); our own keys come from self.server_keys (made in setup).
        self.server_key_store = ServerKeyStore(db)
        self.keyring = KeyRing(
            self.server_key_store, lambda: self.server_keys, self.clock_ms,
            fetch_json=lambda *a, **k: self.federation_client.fetch_json(*a, **k),
            trusted_servers=config.trusted_servers,
            query_trusted_key_servers_first=config.query_trusted_key_servers_first,
            ignored_keys=config.ignored_keys,
        )
        # -- federation transport: signed outgoing requests (server discovery,
        # TLS) and X-Matrix checks of incoming ones. The keyring (federation
        # keys block) gives the origins' keys; without one, every signed
        # request is refused with 401.
        self.federation_client = FederationClient(
            reactor, config, self.server_name, lambda: self.server_keys, dns=self.dns
        )
        self.federation_auth = FederationAuth(
            self.server_name, self.clock_ms, keyring=getattr(self, "keyring", None),
            forbidden_server_names=config.forbidden_remote_server_names,
        )
        # -- media (docs/media.md)
        structure = config.media.directory_structure
        media_files = MediaFiles(
            config.media.path or os.path.join(config.database_path, "media"),
            length=structure.length if structure else 0,
            depth=structure.depth if structure else 0,
        )
        self.media = MediaHandler(
            self.server_name, MediaStore(db), media_files, reactor, self.clock_ms,
            max_upload_size=config.max_request_size,
            legacy_for_new_media=not config.freeze_legacy_media,
        )
        self.media_ratelimit = RateLimiter(
            config.rc_media_per_second, config.rc_media_burst_count, self.clock_ms
        )
        self.url_previews = URLPreviewer(config, self.http_client, self.clock_ms, self.media)
        # -- key backup
        self.key_backup = KeyBackupHandler(KeyBackupStore(db))
        self.account.on_deactivated.append(self.key_backup.user_deactivated)
        # -- end-to-end encryption
        self.events.allow_encryption = config.allow_encryption
        is_local = self.membership.is_local
        self.device_lists = DeviceListTracker(
            DeviceListStore(db), self.globals, self.notifier, self.sync.joined_rooms,
            self.event_store.members, self.event_store.membership, is_local,
            self.event_store.joined_at,
        )
        self.event_store.persist_hooks.append(self.device_lists.event_persisted)
        self.e2e_keys = E2EKeysHandler(
            E2EKeyStore(db), self.device_store, self.globals, self.device_lists, self.uia, is_local
        )
        to_device_store = ToDeviceStore(db)
        self.to_device = ToDeviceHandler(
            to_device_store, self.device_store, self.globals, self.notifier, is_local,
            self.clock_ms,
        )
        self.devices.on_devices_deleted.append(self.e2e_keys.devices_deleted)
        self.devices.on_devices_deleted.append(self.to_device.devices_deleted)
        self.account.on_deactivated.append(self.e2e_keys.user_deactivated)
        self.devices.device_id_reserved.append(self.e2e_keys.is_cross_signing_key)
        self.sync.e2ee = SyncE2EE(self.e2e_keys, to_device_store, self.device_lists)
        # -- federation sender: outgoing transactions, /send, EDUs both ways
        federation_queue = FederationQueueStore(db)

        async def federation_pdu(event_id: str) -> dict[str, Any] | None:
            stored = await self.event_store.get_event(event_id)
            return stored.pdu if stored is not None else None

        self.federation_sender = FederationSender(
            federation_queue, self.federation_client.send_transaction, federation_pdu, reactor,
            self.clock_ms,
            self.server_name,
            backoff_limit_s=config.sender_retry_backoff_limit,
            netburst=config.startup_netburst, netburst_keep=config.startup_netburst_keep,
            timeout_s=config.sender_timeout, enabled=config.allow_federation,
            refused=self.federation_auth.is_forbidden,
        )
        self.federation_auth.on_origin_seen.append(self.federation_sender.destination_is_up)
        self.transactions = TransactionHandler(
            federation_queue, self.event_store.get_room, self.federation_sender.destination_is_up
        )
        self.federation_edus = FederationEdus(
            self.server_name, self.federation_sender, self.event_store, self.typing,
            self.receipts, self.presence, self.sync.rooms_of,
            typing_timeout_s=config.typing_federation_timeout_s,
            incoming_presence=config.allow_incoming_presence,
            outgoing_presence=config.allow_outgoing_presence,
            incoming_typing=config.allow_incoming_typing,
            outgoing_typing=config.allow_outgoing_typing,
            incoming_receipts=config.allow_incoming_read_receipts,
            outgoing_receipts=config.allow_outgoing_read_receipts,
        )
        self.federation_edus.register(self.transactions.edu_handlers)
        self.transactions.acl_allows = self.federation_edus.acl_allows
        self.typing.on_local_typing.append(self.federation_edus.local_typing)
        self.receipts.on_receipt.append(self.federation_edus.local_receipt)
        self.presence.on_local_change.append(self.federation_edus.local_presence)
        self.event_store.persist_hooks.append(self.federation_edus.event_persisted)
        # -- federated rooms: the inbound PDU pipeline and the event endpoints.
        # PDUs of incoming transactions (/send) go through the pipeline.
        self.federation_remote = RemoteEvents(
            self.event_store, keyring=self.keyring, client=self.federation_client,
            max_fetch_prev_events=config.max_fetch_prev_events,
        )
        self.federation_pdus = PduPipeline(
            self.event_store, self.events.linearizer, self.federation_remote
        )
        self.transactions.pdu_handler = self.federation_pdus.transaction_pdu
        self.federation_serving = EventServing(
            self.server_name, self.event_store, self.visibility, self.clock_ms
        )
        # -- federation queries: our clients' questions about other servers'
        # aliases, profiles and directories go to those servers; theirs
        # about ours are answered by api/federation/{query,public_rooms}.
        self.remote_queries = RemoteQueries(
            self.federation_client, config.forbidden_remote_room_directory_server_names
        )
        self.directory.remote_resolve = self.remote_queries.resolve_alias
        self.directory.remote_public_rooms = self.remote_queries.public_rooms
        self.profile.remote_query = self.remote_queries.profile
        # -- federation media: remote media fetched over federation into
        # the media store (looked up at each fetch: tests swap the client).
        self.remote_media = RemoteMediaFetcher(
            self.media.store, media_files,
            get_stream=lambda *a, **k: self.federation_client.get_stream(*a, **k),
            http_request=lambda *a, **k: self.http_client.request(*a, **k),
            clock_ms=self.clock_ms,
            max_size=config.max_request_size,
            prevent_from=config.prevent_media_downloads_from,
            enabled=config.allow_federation,
        )
        self.media.fetch_remote = self.remote_media.fetch
        # -- federated membership: serving make_*/send_*/invite to other
        # servers, and our users' joins, invites, knocks and rejections in
        # rooms of other servers (MembershipHandler.remote). Accepted events
        # go out through federated_membership.send_pdu(room_id, event,
        # destinations): the sender's, once there is one. Aliases of other
        # servers resolve through remote_membership.resolve_alias.
        self.federated_membership = MembershipServlet(
            self.server_name, self.event_store, self.events, self.users,
            lambda pdu, version: self.keyring.verify_event(pdu, version),
            restricted_authoriser=self.membership.restricted_authoriser,
            block_non_admin_invites=config.block_non_admin_invites,
        )
        self.remote_membership = RemoteMembership(
            self.server_name, self.event_store, self.events, self.federated_membership,
            lambda: self.federation_client,
            lambda pdu, version: self.keyring.verify_event(pdu, version),
            lambda *a, **k: self.keyring.verify_json_for_server(*a, **k),
            self.clock_ms,
            allow_unstable_room_versions=config.allow_unstable_room_versions,
        )
        self.federated_membership.send_pdu = self.federation_sender.send_pdu

        async def resolve_remote_alias(alias: str) -> tuple[str, list[str]]:
            answer = await self.remote_queries.resolve_alias(alias)
            return answer["room_id"], list(answer.get("servers", []))

        self.remote_membership.resolve_alias = resolve_remote_alias
        if config.allow_federation:
            self.membership.remote = self.remote_membership
        # -- federation e2ee: to-device messages, device lists and signing
        # keys both ways as EDUs; our users' keys served to other servers;
        # remote users' keys for our clients from the cache or their server.
        self.federation_e2ee = FederationE2EE(
            self.server_name, FederationDeviceStore(db), self.e2e_keys, self.to_device,
            self.device_lists, self.federation_sender.send_edu, lambda: self.federation_client,
            self.sync.joined_rooms, self.event_store.members, is_local,
        )
        self.e2e_keys.federate_device_names = config.allow_device_name_federation
        self.federation_e2ee.register(self.transactions.edu_handlers)
        self.device_lists.on_key_changed.append(self.federation_e2ee.local_keys_changed)
        self.devices.on_device_renamed.append(
            lambda user_id, device_id: self.device_lists.key_changed(user_id)
        )
        self.event_store.persist_hooks.append(self.federation_e2ee.event_persisted)
        if config.allow_federation:
            self.to_device.remote_senders.append(self.federation_e2ee.send_to_device)
            self.e2e_keys.remote_query = self.federation_e2ee.query
            self.e2e_keys.remote_claim = self.federation_e2ee.claim
        # -- admin room: the bot, #admins and its commands (docs/admin.md)
        self.admin_store = AdminStore(db)
        self.registration_tokens = RegistrationTokenStore(db)
        self.registration.dynamic_tokens = self.registration_tokens
        self.admin_room = AdminRoom(
            AdminRoomDeps(
                self.server_name, self.admin_store, self.users, self.event_store, self.events,
                self.membership, self.room_creation, self.aliases_store, self.devices, self.passwords,
                self.clock_ms, reactor.callLater,  # type: ignore[attr-defined]
            ),
            emergency_password=config.emergency_password,
            log_guest_registrations=config.log_guest_registrations,
        )
        started_at = time.time()

        def admin_commands() -> Group:
            # The command table and its code (handlers/admin_groups) load
            # with the first command in the admin room.
            from conduit_tw.handlers.admin_groups import AdminDeps, command_table

            return command_table(AdminDeps(
                self.server_name, self.users, self.registration, self.account, self.devices,
                self.passwords, self.event_store, self.membership, self.directory,
                self.directory_store, self.aliases_store, self.media, lambda: self.server_keys,
                self.admin_store, self.admin_room, config, started_at, self.clock_ms,
                self.media.store, self.keyring, db.backup,
                lambda: reactor.stop(),  # type: ignore[attr-defined]
                self.registration_tokens, self.federation_client, self.http_client,
                configure_logging, lambda: self.appservices, self.device_lists.key_changed,
                federation_incoming=self.federation_pdus.incoming,
            ))

        self.admin_room.command_table = admin_commands
        # -- shared-secret registration (Synapse's register_new_matrix_user)
        self.shared_secret_registration = SharedSecretRegistration(
            (config.registration_shared_secret or "").encode("utf-8") or None,
            self.registration, self.devices, self.admin_room.add_admin, self.clock_ms,
        )
        if config.auto_deactivate_banned_room_attempts:
            self.admin_room.auto_deactivate = self.account.deactivate
        self.events.validators.append(self.admin_room.check_event)
        self.events.validators.append(self.admin_room.check_banned_room)
        self.directory.publish_checks.append(self.admin_room.check_publish)
        self.registration.on_registered.append(self.admin_room.user_registered)
        self.event_store.persist_hooks.append(self.admin_room.event_persisted)
        # -- federated rooms 2: /messages backfills history from the room's
        # other servers.
        self.backfiller = Backfiller(
            self.server_name, self.event_store, self.events.linearizer, self.federation_remote
        )
        # /timestamp_to_event both ways: served, and asked of the room's
        # other servers when our history may lack the answer.
        self.federation_timestamps = TimestampToEvent(
            self.server_name, self.event_store, self.federation_serving,
            self.room_history.find_by_timestamp, lambda: self.federation_client,
        )
        # Spaces: /hierarchy served; fetch_remote is for the client /hierarchy.
        self.federation_hierarchy = FederationHierarchy(
            self.server_name, self.event_store, lambda: self.federation_client
        )
        if config.allow_federation:
            self.room_history.backfill = self.backfiller.backfill
            self.room_history.remote_timestamp = self.federation_timestamps.ask_remote
        # -- federated rooms 3: rooms whose incoming federation the operator
        # disabled (admin room `federation disable-room`, federation/disabled_rooms.py).
        self.federation_pdus.room_disabled = self.admin_store.is_federation_disabled
        self.federation_edus.room_disabled = self.admin_store.is_federation_disabled
        self.federated_membership.room_disabled = self.admin_store.is_federation_disabled
        # Remote members met through a remote join's state: their cached
        # device lists may be stale (federation/e2ee.py event_persisted).
        self.federation_e2ee.joined_at = self.event_store.joined_at
        # -- relations and search: indexes filled by persist hooks (local and
        # federation events alike); aggregations bundled by the serializer.
        self.relations = RelationsHandler(
            RelationStore(db), self.event_store, self.visibility, self.serializer,
            self.room_history.check_access,
        )
        self.event_store.persist_hooks.append(self.relations.event_persisted)
        self.events.validators.append(self.relations.check_thread)
        self.serializer.bundle = self.relations.bundle
        self.search = SearchHandler(
            SearchStore(db), self.event_store, self.visibility, self.serializer
        )
        self.event_store.persist_hooks.append(self.search.event_persisted)
        # -- spaces, directory, voip, openid. Rooms of other servers in a
        # space or a summary come from spaces.remote_hierarchy /
        # room_summaries.remote_summary (federation /hierarchy) when
        # federation is on; otherwise they are skipped (404 for a summary).
        self.room_summaries = RoomSummaries(self.event_store, self.directory.resolve_alias)
        self.spaces = SpaceHierarchy(self.event_store, self.room_summaries)
        self.user_directory = UserDirectory(
            self.server_name, UserDirectoryStore(db), self.event_store, self.users
        )
        self.event_store.persist_hooks.append(self.user_directory.event_persisted)
        self.profile.on_profile_changed.append(self.user_directory.profile_changed)
        self.mutual_rooms = MutualRooms(self.event_store)
        self.turn = TurnHandler(
            TurnSettings(
                uris=tuple(config.turn_uris), secret=config.turn_secret,
                username=config.turn_username, password=config.turn_password,
                ttl=config.turn_ttl, allow_guests=config.turn_allow_guests,
            ),
            self.clock_ms,
        )
        self.call_protection = CallProtection(self.directory_store.is_public)
        self.events.validators.append(self.call_protection.check_event)
        self.openid = OpenIdHandler(
            self.server_name, OpenIdTokenStore(db), self.clock_ms, config.openid_token_ttl
        )
        if config.allow_federation:
            self.spaces.remote_hierarchy = self.federation_hierarchy.fetch_remote
            self.room_summaries.remote_summary = self.federation_hierarchy.fetch_summary
        # -- appservices: the registry (admin room and app_service_config_files,
        # loaded in setup), as_token identity assertion, appservice login and
        # registration, exclusive namespaces, rate_limited.
        # Requests to appservices: the same client class as every outgoing
        # request (TLS policy, caps), its own pool for appservice_idle_timeout,
        # appservice_timeout per request. ip_range_denylist does not apply:
        # the URL is the admin's (bridges listen on loopback), as in Synapse.
        self.appservice_http_client = LazyOutgoingHTTPClient(
            reactor, config, idle_timeout=config.appservice_idle_timeout, ip_range_denylist=[],
            dns=self.dns,
        )
        self.appservice_client = AppserviceClient(
            self.appservice_http_client, config.appservice_timeout
        )
        self.appservice_store = AppserviceStore(db)
        self.appservices = AppserviceHandler(
            self.server_name, self.appservice_store, self.users, self.device_store,
            self.registration.create_user, self.auth.token_of, self.appservice_client,
            self.clock_ms, config_files=config.app_service_config_files,
        )
        self.auth.appservice_requester = self.appservices.requester
        self.login.appservice_login = self.appservices.login_check
        self.registration.appservice_check = self.appservices.registration_check
        self.registration.exclusive_checks.append(self.appservices.user_is_exclusive)
        self.directory.alias_checks.append(self.appservices.check_alias)
        self.room_creation.before_room_created.append(self.appservices.check_create_alias)
        self.ratelimit.appservice_rate_limited = self.appservices.is_rate_limited
        self.profile.unknown_user = self.appservices.query_user
        self.directory.unknown_alias = self.appservices.query_alias
        self.directory.network_rooms = self.appservices.network_rooms
        # Pushing: events queued with the event (persist hook), ephemeral
        # data and to-device messages from their handlers' hooks.

        async def appservice_events(event_ids: list[str]) -> list[dict[str, Any]]:
            found = await self.event_store.get_events(event_ids)
            return await self.serializer.serialize_events(
                [found[e] for e in event_ids if e in found]
            )

        # In-process bridges (plugins enabled by appservice_bridges) get
        # their transactions by method call and act through a BridgeAPI.

        def bridge_api(reg: Any) -> BridgeAPI:
            return BridgeAPI(
                reg, self.appservices.masquerade, self.registration.create_user, self.users.exists,
                self.membership, self.events, self.room_creation,
                self.appservice_store.get_bridge_data, self.appservice_store.put_bridge_data,
            )

        self.appservice_bridges = BridgeHost(
            config.appservice_bridges, self.appservices, bridge_api, self.appservice_client.push,
            lambda method, path, handler: self.router.add(method, path, handler), set(),
        )
        self.appservice_sender = AppserviceSender(
            self.appservice_store, self.event_store, self.aliases_store, self.appservices.list,
            self.appservice_bridges.deliver, appservice_events, reactor,
        )
        self.appservice_sender.local_ids = self.appservice_bridges.local_ids
        self.appservices.on_unregistered.append(self.appservice_sender.forget)
        self.event_store.persist_hooks.append(self.appservice_sender.event_persisted)
        self.typing.on_local_typing.append(self.appservice_sender.typing)
        self.receipts.on_receipt.append(self.appservice_sender.receipt)
        self.presence.on_local_change.append(self.appservice_sender.presence)
        self.to_device.on_local_delivered.append(self.appservice_sender.to_device)
        # -- housekeeping: one timer service (started and stopped by
        # service.ConduitService) sweeping what expired every
        # cleanup_second_interval, and applying the media retention policies.
        self.housekeeping_sweeps = Housekeeping(
            self.clock_ms, self.tokens.purge_expired_login_tokens, self.openid.store.purge_expired,
            self.media.expire_pending,
            [self.event_store.rooms.purge_txns, self.to_device.store.purge_txns],
            self.uia.expire_sessions,
        )
        self.media_retention = MediaRetention(
            self.server_name, self.media.store, self.media, config.media.retention, self.clock_ms
        )
        self.housekeeping = PeriodicTasks(reactor)
        self.housekeeping.add(
            "cleanup", config.cleanup_second_interval, self.housekeeping_sweeps.run
        )
        if self.media_retention.enabled:
            self.housekeeping.add(
                "media_retention", self.media_retention.interval, self.media_retention.run
            )
        # -- JWT login: org.matrix.login.jwt (and JWTs as m.login.token)
        # when jwt_secret is set.
        if config.jwt_secret:
            self.login.jwt_login = JWTLogin(
                config.jwt_secret, self.server_name, self.registration, self.users, self.clock_ms
            ).user_for
        self.router = Router()
        self.resource = MatrixResource(self.router, gzip_compression=config.gzip_compression)
        # Requests wait until setup() has mounted the API.
        self.resource.hold()

    async def setup(self) -> None:
        """Load (or create) persistent state and mount the API."""
        await database_ready(self.db)  # a network backend's start-up check
        self.server_keys = await ServerKeys.load(self.server_name, self.globals, self.clock_ms)
        self.events.server_keys = self.server_keys
        await self.event_store.setup()
        # /sync's "now" is the notifier's position (handlers/sync.py): start
        # it at the stored counter so tokens stay valid across restarts.
        self.notifier.position = max(self.notifier.position, await self.globals.current_position())
        await self.presence.start()
        await self.media.setup()
        await self.federation_sender.start()  # -- federation sender: resend what is queued
        await self.registration_tokens.load()
        await self.admin_room.setup()
        await self.appservices.load()  # -- appservices: registrations, bridges, queues
        await self.appservice_bridges.start()
        await self.appservice_sender.start()
        for module in API_MODULES:
            module.register(self.router, self)
        self.resource.release()

    def close(self) -> Deferred[None]:
        """
        Shut the components down, then close the database: the pending
        last-seen data is written, the push deliveries in flight are
        cancelled and awaited, and the outgoing connections are closed
        first, so nothing is written to a closed database. The Deferred
        fires once the database is closed.
        """
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        await self.admin_room.drain()
        try:
            await self.devices.flush()
        except Exception:
            log.failure("Flushing last-seen data failed")
        self.presence.stop()
        try:
            await self.federation_sender.stop()
        except Exception:
            log.failure("Stopping the federation sender failed")
        self.typing.stop()
        try:
            await self.appservice_sender.stop()  # -- appservices
            await self.appservice_bridges.stop()
        except Exception:
            log.failure("Stopping the appservice sender failed")
        # Pushes: the scheduled ones are dropped, the started ones finish
        # handing over, then the deliveries in flight (requests, retry
        # backoffs) are cancelled and awaited, before the client and the
        # database they use are closed.
        try:
            await self.notifications.stop()
            await self.pushers.stop()
        except Exception:
            log.failure("Stopping the pushers failed")
        for client in (
            self.http_client, self.push_http_client, self.federation_client,
            self.appservice_http_client,
        ):
            try:
                await client.close()
            except Exception:
                log.failure("Closing outgoing connections failed")
        self.db.close()
