"""
Token-bucket rate limiting (client-server-api "Rate limiting").

Each limiter has a bucket per key (a user ID, or the client IP for
unauthenticated requests) holding at most C{burst} tokens and refilled at
C{per_second}; a request takes one token or is refused with 429
C{M_LIMIT_EXCEEDED}, C{retry_after_ms} and a C{Retry-After} header.
Server admins and appservices registered with C{rate_limited: false}
(and the users they act as) are exempt. A rate of 0 disables a limiter.

Config keys (docs/configuration.md, "Rate limiting"):
C{rc_registration_per_second}/C{rc_registration_burst_count} for
C{/register} (and the registration-token validity check and
C{/register/available}), C{rc_login_per_second}/C{rc_login_burst_count}
for C{/login} per IP, failed password logins per account, and
C{/login/get_token} per user, C{rc_message_per_second}/
C{rc_message_burst_count} for sending events (used by the rooms code via
L{RateLimits.check_requester}).

Per user, also through L{RateLimits.check_requester} at each endpoint:
C{rc_joins_*} (join and knock), C{rc_invites_*}, C{rc_profile_*} (profile
field changes), C{rc_account_data_*} (account data, room tags, push rules,
filters, read markers), C{rc_room_aliases_*} (alias creation and deletion),
C{rc_directory_*} (directory visibility), C{rc_pushers_*} (C{/pushers/set})
and C{rc_keys_*} (device updates; end-to-end key uploads once they land).
C{rc_media_*} limits uploads, C{/media/v1/create} and URL previews per user
(api/media.py; its limiter is C{hs.media_ratelimit}).

L{check_json_size} caps stored user JSON (account data, tag sets, filters,
pushers) at C{max_account_data_size} bytes: 413 C{M_TOO_LARGE}
(client-server-api "Standard error response": "The request or entity was
too large").
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable

from conduit_tw.errors import Codes, MatrixError

if TYPE_CHECKING:
    from conduit_tw.config import Config
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.storage.stores.users import UserStore

#: Buckets kept before full ones are dropped (bounds memory under a flood
#: of distinct IPs).
_MAX_BUCKETS = 50_000


def check_json_size(value: Any, limit: int, what: str = "Content") -> None:
    """
    Refuse C{value} with 413 C{M_TOO_LARGE} when its compact UTF-8 JSON
    form is longer than C{limit} bytes.
    """
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > limit:
        raise MatrixError(
            413, Codes.TOO_LARGE, f"{what} is too large ({size} bytes; at most {limit})"
        )



def limit_exceeded(wait_ms: int, msg: str = "Too many requests") -> MatrixError:
    """429 M_LIMIT_EXCEEDED with C{retry_after_ms} and C{Retry-After} (spec: "Rate limiting")."""
    wait_ms = max(1, wait_ms)
    return MatrixError(
        429,
        Codes.LIMIT_EXCEEDED,
        msg,
        headers={"Retry-After": str(math.ceil(wait_ms / 1000))},
        retry_after_ms=wait_ms,
    )

class RateLimiter:
    """One token bucket per key."""

    def __init__(self, per_second: float, burst: int, clock_ms: Callable[[], int]) -> None:
        self.per_second = per_second
        self.burst = max(1, burst)
        self._clock_ms = clock_ms
        #: key -> (tokens left, time in ms they were counted)
        self._buckets: dict[str, tuple[float, int]] = {}

    @property
    def enabled(self) -> bool:
        """False when the rate is 0 (no limit)."""
        return self.per_second > 0

    def _level(self, key: str, now: int) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return float(self.burst)
        tokens, at = entry
        return min(float(self.burst), tokens + (now - at) / 1000.0 * self.per_second)

    def check(self, key: str, update: bool = True) -> None:
        """
        Take one token from C{key}'s bucket (only look, when not C{update}).

        @raise MatrixError: 429 M_LIMIT_EXCEEDED when the bucket is empty.
        """
        if not self.enabled:
            return
        now = self._clock_ms()
        level = self._level(key, now)
        if level < 1.0:
            raise limit_exceeded(math.ceil((1.0 - level) / self.per_second * 1000))
        if update:
            self._store(key, level - 1.0, now)

    def take(self, key: str) -> None:
        """Take one token without refusing (for work already done)."""
        if not self.enabled:
            return
        now = self._clock_ms()
        self._store(key, max(0.0, self._level(key, now) - 1.0), now)

    def _store(self, key: str, level: float, now: int) -> None:
        if len(self._buckets) >= _MAX_BUCKETS and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (level, now)

    def _prune(self, now: int) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= _MAX_BUCKETS:
            self._buckets.clear()


class RateLimits:
    """The server's limiters, built from the config."""

    def __init__(self, config: "Config", users: "UserStore", clock_ms: Callable[[], int]) -> None:
        self._users = users
        self.registration = RateLimiter(
            config.rc_registration_per_second, config.rc_registration_burst_count, clock_ms
        )
        #: Same rates as registration, separate buckets, for token
        #: validity checks and username availability (brute-force guard).
        self.registration_checks = RateLimiter(
            config.rc_registration_per_second, config.rc_registration_burst_count, clock_ms
        )
        self.login = RateLimiter(config.rc_login_per_second, config.rc_login_burst_count, clock_ms)
        #: Failed password logins per target account.
        self.failed_login = RateLimiter(
            config.rc_login_per_second, config.rc_login_burst_count, clock_ms
        )
        self.message = RateLimiter(
            config.rc_message_per_second, config.rc_message_burst_count, clock_ms
        )
        #: Joins and knocks.
        self.joins = RateLimiter(config.rc_joins_per_second, config.rc_joins_burst_count, clock_ms)
        self.invites = RateLimiter(
            config.rc_invites_per_second, config.rc_invites_burst_count, clock_ms
        )
        #: Profile field changes (display name and avatar changes write a
        #: member event into every joined room).
        self.profile = RateLimiter(
            config.rc_profile_per_second, config.rc_profile_burst_count, clock_ms
        )
        #: Account data, room tags, push rules, filters and read markers.
        self.account_data = RateLimiter(
            config.rc_account_data_per_second, config.rc_account_data_burst_count, clock_ms
        )
        self.room_aliases = RateLimiter(
            config.rc_room_aliases_per_second, config.rc_room_aliases_burst_count, clock_ms
        )
        #: Published room directory visibility changes.
        self.directory = RateLimiter(
            config.rc_directory_per_second, config.rc_directory_burst_count, clock_ms
        )
        self.pushers = RateLimiter(
            config.rc_pushers_per_second, config.rc_pushers_burst_count, clock_ms
        )
        #: Device updates (and end-to-end key uploads once they land).
        self.keys = RateLimiter(config.rc_keys_per_second, config.rc_keys_burst_count, clock_ms)
        #: Largest stored user JSON (account data, tag set, filter, pusher).
        self.max_json_size = config.max_account_data_size
        #: C{appservice_id -> bool}: the registration's C{rate_limited}
        #: (set by the appservice code; without it appservices pass).
        self.appservice_rate_limited: Callable[[str], bool] | None = None

    async def check_requester(self, limiter: RateLimiter, requester: "Requester") -> None:
        """Rate-limit an authenticated request by user; admins and unlimited appservices pass."""
        if not limiter.enabled:
            return
        if requester.appservice_id is not None and (
            self.appservice_rate_limited is None
            or not self.appservice_rate_limited(requester.appservice_id)
        ):
            return
        if await self._users.is_admin(requester.user_id):
            return
        limiter.check(requester.user_id)

    def check_size(self, value: Any, what: str = "Content") -> None:
        """413 C{M_TOO_LARGE} when C{value} exceeds C{max_account_data_size}."""
        check_json_size(value, self.max_json_size, what)

    def check_ip(self, limiter: RateLimiter, ip: str) -> None:
        """Rate-limit an unauthenticated request by client IP."""
        limiter.check(ip)
