"""
The incoming-webhook bridge: an in-process appservice bridge
(docs/plugins/bridges.md) that lets outside programs (CI, monitoring)
post messages into a room over plain HTTP.

- Invite C{@webhook:<server>} to a room; it joins.
- Say C{!webhook new [name]} in the room: the bot answers with a secret
  URL path C{/_conduit/bridges/webhook/hooks/<token>} (the token is the
  only credential; anyone in the room may make one, as anyone there may
  post anyway). C{!webhook delete <token>} removes a hook.
- C{POST} JSON C{{"text": "...", "username": "ci"}} (optional C{html},
  the formatted body) to it: the message appears in the room from the
  bridge user C{@webhook_<username>:<server>}, who joins (invited by the
  bot if needed) on first use. The answer is C{{"event_id": ...}}.

Hooks are kept in the bridge's own persisted data
(L{BridgeAPI.put_data}); commands of a transaction that is delivered
again are not run twice (the last handled transaction ID is stored).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Callable

from twisted.plugin import IPlugin
from zope.interface import implementer

from conduit_tw.appservice.bridge import BridgeAPI, IAppserviceBridge, IAppserviceBridgeFactory
from conduit_tw.errors import Codes, MatrixError, not_found
from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.bridges.webhook")

#: The path hooks are posted to, under /_conduit/bridges/webhook.
HOOK_PATH = "/hooks/{token}"
_NAME = re.compile(r"[^a-z0-9._=\-]")
MAX_TEXT = 32 * 1024


@implementer(IAppserviceBridge)
class WebhookBridge:
    """See the module docstring."""

    def __init__(self) -> None:
        self.api: BridgeAPI | None = None

    def registration(self) -> dict[str, Any]:
        return {
            "sender_localpart": "webhook",
            "namespaces": {
                "users": [{"exclusive": True, "regex": "@webhook_.*"}],
                "aliases": [],
                "rooms": [],
            },
        }

    def start(self, api: BridgeAPI) -> None:
        self.api = api

    def stop(self) -> None:
        self.api = None

    def routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return [("POST", HOOK_PATH, self.post_hook)]

    # -- transactions

    async def on_transaction(self, txn_id: str, body: dict[str, Any]) -> None:
        api = self.api
        if api is None or await api.get_data("last_txn") == txn_id:
            return
        for i, event in enumerate(body.get("events", [])):
            try:
                await self._event(api, event, f"{txn_id}.{i}")
            except MatrixError as e:
                log.info("webhook bridge: {e} (event {id})", e=e, id=event.get("event_id"))
        await api.put_data("last_txn", txn_id)

    async def _event(self, api: BridgeAPI, event: dict[str, Any], txn: str) -> None:
        room_id = event.get("room_id")
        content = event.get("content") or {}
        if (
            event.get("type") == "m.room.member"
            and event.get("state_key") == api.bot
            and content.get("membership") == "invite"
        ):
            await api.join(api.bot, room_id)
            await self._say(api, room_id, "Hello! Say `!webhook new [name]` to make an incoming webhook.", txn)
            return
        if event.get("type") != "m.room.message" or event.get("sender") == api.bot:
            return
        text = content.get("body")
        if not isinstance(text, str) or not text.startswith("!webhook"):
            return
        words = text.split()
        if len(words) >= 2 and words[1] == "new":
            name = _NAME.sub("", (words[2] if len(words) > 2 else "hook").lower())[:32] or "hook"
            token = secrets.token_urlsafe(24)
            await api.put_data("hook:" + token, {"room_id": room_id, "name": name, "creator": event.get("sender")})
            path = "/_conduit/bridges/webhook" + HOOK_PATH.format(token=token)
            await self._say(api, room_id, f"Webhook {name}: POST {{\"text\": \"...\"}} to {path}", txn)
        elif len(words) == 3 and words[1] == "delete":
            hook = await api.get_data("hook:" + words[2])
            if hook is not None and hook.get("room_id") == room_id:
                await api.put_data("hook:" + words[2], None)
                await self._say(api, room_id, "Webhook deleted.", txn)
        else:
            await self._say(api, room_id, "Commands: `!webhook new [name]`, `!webhook delete <token>`", txn)

    @staticmethod
    async def _say(api: BridgeAPI, room_id: str, text: str, txn: str) -> None:
        await api.send(api.bot, room_id, {"msgtype": "m.notice", "body": text}, txn_id=txn)

    # -- the HTTP endpoint

    async def post_hook(self, request: Any, token: str) -> dict[str, Any]:
        """C{POST /_conduit/bridges/webhook/hooks/{token}}."""
        api = self.api
        hook = await api.get_data("hook:" + token) if api is not None else None
        if api is None or hook is None:
            raise not_found("Unknown webhook")
        body = request.json_object()
        text = body.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise MatrixError(400, Codes.BAD_JSON, f"'text' must be a non-empty string of at most {MAX_TEXT} characters")
        username = body.get("username", hook["name"])
        if not isinstance(username, str):
            raise MatrixError(400, Codes.BAD_JSON, "'username' must be a string")
        name = _NAME.sub("", username.lower())[:32] or hook["name"]
        user_id = api.user_id("webhook_" + name)
        room_id = hook["room_id"]
        await api.ensure_registered(user_id)
        if room_id not in await api.joined_rooms(user_id):
            try:
                await api.join(user_id, room_id)
            except MatrixError:
                await api.invite(api.bot, room_id, user_id)
                await api.join(user_id, room_id)
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        html = body.get("html")
        if isinstance(html, str) and html:
            content.update(format="org.matrix.custom.html", formatted_body=html)
        return {"event_id": await api.send(user_id, room_id, content)}


@implementer(IPlugin, IAppserviceBridgeFactory)
class WebhookBridgeFactory:
    """The plugin object (twisted/plugins/conduit_bridges.py)."""

    name = "webhook"
    description = "incoming webhooks: HTTP POSTs become room messages"

    def build(self) -> WebhookBridge:
        return WebhookBridge()
