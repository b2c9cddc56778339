"""
User profiles (client-server-api "Profiles", v1.16 extended profile fields).

Fields: C{displayname} and C{avatar_url} (strings; C{""} removes them),
C{m.tz}, and custom namespaced fields (any JSON). Limits from the spec:
a key is at most 255 bytes (M_KEY_TOO_LARGE) and the whole profile at most
64 KiB (M_PROFILE_TOO_LARGE); display names are at most 256 characters
and avatar URLs must be C{mxc://} URIs of at most 1000 characters.

Hooks: L{ProfileHandler.on_profile_changed} is where the rooms code sends
new C{m.room.member} events into the user's joined rooms (and presence
announces the change), as "Events on Change of Profile Information" asks.
Remote profiles are fetched through L{ProfileHandler.remote_query}
(federation queries install it); L{ProfileHandler.query} answers other
servers' queries for ours.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from conduit_tw.errors import Codes, MatrixError, forbidden, not_found
from conduit_tw.util.hooks import run_hooks

if TYPE_CHECKING:
    from conduit_tw.handlers.auth import Requester
    from conduit_tw.storage.stores.users import UserStore

KEY_RE = re.compile(r"avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
MAX_KEY_BYTES = 255
MAX_PROFILE_BYTES = 64 * 1024
MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1000

#: C{(user_id, field, new value or None when removed)}.
ProfileChangedHook = Callable[[str, str, Any], "Awaitable[None] | None"]
#: C{(user_id, field or None for the whole profile) -> profile dict}; raises
#: MatrixError 404/403.
RemoteQuery = Callable[[str, "str | None"], Awaitable[dict[str, Any]]]


def _size(profile: dict[str, Any]) -> int:
    return len(json.dumps(profile, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


class ProfileHandler:
    """Reads and writes profile fields and tells interested code."""

    def __init__(self, server_name: str, users: "UserStore") -> None:
        self.server_name = server_name
        self.users = users
        #: Async or sync callables run after a local user's field changed.
        self.on_profile_changed: list[ProfileChangedHook] = []
        #: Federation profile query, installed by the federation code.
        self.remote_query: RemoteQuery | None = None
        #: C{user_id -> bool}: asks the appservices whose namespaces hold an
        #: unknown local user (application-service-api "Query User");
        #: installed by the appservice code.
        self.unknown_user: Callable[[str], Awaitable[bool]] | None = None

    def _is_local(self, user_id: str) -> bool:
        return user_id.startswith("@") and user_id.partition(":")[2] == self.server_name

    @staticmethod
    def check_key(key: str) -> None:
        """400 M_KEY_TOO_LARGE / M_INVALID_PARAM for unusable field names."""
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise MatrixError(400, "M_KEY_TOO_LARGE", "Profile key is longer than 255 bytes")
        if not KEY_RE.fullmatch(key):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid profile key.")

    async def _local_account_or_404(self, user_id: str) -> None:
        if not await self.users.exists(user_id):
            if self.unknown_user is None or not await self.unknown_user(user_id):
                raise not_found("Profile not found")

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        """C{GET /profile/{userId}}."""
        if not self._is_local(user_id):
            if self.remote_query is None:
                raise not_found("Profile not found")
            return await self.remote_query(user_id, None)
        await self._local_account_or_404(user_id)
        return await self.users.get_profile(user_id)

    async def get_field(self, user_id: str, key: str) -> dict[str, Any]:
        """C{GET /profile/{userId}/{keyName}}."""
        self.check_key(key)
        if not self._is_local(user_id):
            if self.remote_query is None:
                raise not_found("Profile not found")
            profile = await self.remote_query(user_id, key)
            if profile.get(key) is None:
                raise not_found("Profile field not found")
            return {key: profile[key]}
        await self._local_account_or_404(user_id)
        present, value = await self.users.get_profile_field(user_id, key)
        if not present:
            raise not_found("Profile field not found")
        return {key: value}

    async def query(self, user_id: str, field: str | None) -> dict[str, Any]:
        """
        Another server's C{GET /_matrix/federation/v1/query/profile}
        (server-server-api "Querying for information"): the public profile
        of one of our users, or only C{field} of it (C{{}} when unset, as
        the spec allows). 400 M_INVALID_PARAM for users of other servers,
        404 M_NOT_FOUND for users we do not have.
        """
        if field is not None:
            self.check_key(field)
        if not self._is_local(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "User is not hosted on this homeserver")
        await self._local_account_or_404(user_id)
        if field is None:
            return await self.users.get_profile(user_id)
        present, value = await self.users.get_profile_field(user_id, field)
        return {field: value} if present else {}

    def _authorise(self, requester: "Requester", user_id: str, key: str) -> None:
        if requester.user_id != user_id:
            raise forbidden("You may only change your own profile")
        if requester.is_guest and key != "displayname":
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests may only change their display name")

    @staticmethod
    def _validate(key: str, value: Any) -> Any:
        """The value to store, or None to remove the field."""
        if key == "displayname":
            if not isinstance(value, str):
                raise MatrixError(400, Codes.BAD_JSON, "displayname must be a string")
            if len(value) > MAX_DISPLAYNAME_LENGTH:
                raise MatrixError(400, Codes.INVALID_PARAM, "displayname is too long")
            return value or None
        if key == "avatar_url":
            if not isinstance(value, str):
                raise MatrixError(400, Codes.BAD_JSON, "avatar_url must be a string")
            if len(value) > MAX_AVATAR_URL_LENGTH:
                raise MatrixError(400, Codes.INVALID_PARAM, "avatar_url is too long")
            if value and not re.fullmatch(r"mxc://[^/]+/[^/]+", value):
                raise MatrixError(400, Codes.INVALID_PARAM, "avatar_url must be an mxc:// URI")
            return value or None
        if key == "m.tz" and not isinstance(value, str):
            raise MatrixError(400, Codes.BAD_JSON, "m.tz must be a string")
        return value

    async def set_field(self, requester: "Requester", user_id: str, key: str, body: dict[str, Any]) -> None:
        """C{PUT /profile/{userId}/{keyName}}."""
        self.check_key(key)
        self._authorise(requester, user_id, key)
        if key not in body:
            raise MatrixError(400, Codes.MISSING_PARAM, f"Missing '{key}'")
        value = self._validate(key, body[key])
        profile = await self.users.get_profile(user_id)
        if value is None:
            profile.pop(key, None)
        else:
            profile[key] = value
        if _size(profile) > MAX_PROFILE_BYTES:
            raise MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB")
        if value is None:
            await self.users.delete_profile_field(user_id, key)
        else:
            await self.users.set_profile_field(user_id, key, value)
        await self._changed(user_id, key, value)

    async def delete_field(self, requester: "Requester", user_id: str, key: str) -> None:
        """C{DELETE /profile/{userId}/{keyName}}."""
        self.check_key(key)
        self._authorise(requester, user_id, key)
        present, _ = await self.users.get_profile_field(user_id, key)
        if present:
            await self.users.delete_profile_field(user_id, key)
            await self._changed(user_id, key, None)

    async def _changed(self, user_id: str, key: str, value: Any) -> None:
        await run_hooks(self.on_profile_changed, user_id, key, value, what="on_profile_changed")
