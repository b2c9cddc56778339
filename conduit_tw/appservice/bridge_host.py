"""
L{BridgeHost}: finds the bridges named in C{appservice_bridges} among the
Twisted plugins (C{getPlugins(IAppserviceBridgeFactory)}), registers each
as an appservice (once; the stored registration keeps its tokens), starts
it with its L{BridgeAPI}, mounts its HTTP routes under
C{/_conduit/bridges/<name>}, and delivers transactions to it by method
call (L{deliver}, which sends everything else over HTTP).
"""

from __future__ import annotations

import secrets
from typing import Any, Awaitable, Callable, Iterable

import yaml
from twisted.internet.defer import maybeDeferred
from twisted.plugin import getPlugins
from zope.interface.verify import verifyObject

from conduit_tw.appservice.bridge import BridgeAPI, IAppserviceBridge, IAppserviceBridgeFactory
from conduit_tw.appservice.registration import Registration
from conduit_tw.logging import get_logger

log = get_logger("conduit_tw.appservice.bridges")

#: The ID of a bridge's registration.
BRIDGE_ID_PREFIX = "bridge-"


class BridgeConfigError(Exception):
    """An enabled bridge is unknown or unusable (one line)."""


def available_bridges() -> dict[str, Any]:
    """The installed bridge plugins by name."""
    import twisted.plugins

    return {p.name: p for p in getPlugins(IAppserviceBridgeFactory, twisted.plugins)}


class BridgeHost:
    """See the module docstring."""

    def __init__(
        self,
        names: Iterable[str],
        appservices: Any,
        make_api: Callable[[Registration], BridgeAPI],
        push: Callable[[Registration, str, dict[str, Any]], Awaitable[None]],
        mount: Callable[[str, str, Callable[..., Any]], None],
        local_ids: set[str],
    ) -> None:
        self.names = tuple(names)
        self.appservices = appservices
        self.make_api = make_api
        self.push = push
        self.mount = mount
        #: The sender's set of appservices delivered in-process.
        self.local_ids = local_ids
        self.bridges: dict[str, IAppserviceBridge] = {}

    async def start(self) -> None:
        """
        Start the enabled bridges (after the registrations are loaded).

        @raise BridgeConfigError: an unknown bridge name.
        """
        if not self.names:
            return
        plugins = available_bridges()
        for name in self.names:
            factory = plugins.get(name)
            if factory is None:
                known = ", ".join(sorted(plugins)) or "none"
                raise BridgeConfigError(f"appservice_bridges: unknown bridge {name!r} (installed: {known})")
            bridge = factory.build()
            verifyObject(IAppserviceBridge, bridge)
            reg_id = BRIDGE_ID_PREFIX + name
            reg = self.appservices.get(reg_id)
            if reg is None:
                doc = dict(bridge.registration())
                doc.update(
                    id=reg_id, url=None, as_token=secrets.token_urlsafe(32),
                    hs_token=secrets.token_urlsafe(32),
                )
                doc.setdefault("rate_limited", False)
                reg = await self.appservices.register(yaml.safe_dump(doc, sort_keys=False))
            self.bridges[reg_id] = bridge
            self.local_ids.add(reg_id)
            for method, path, handler in bridge.routes():
                self.mount(method, f"/_conduit/bridges/{name}{path}", handler)
            await maybeDeferred(bridge.start, self.make_api(reg))
            log.info("In-process bridge {name} started ({desc})", name=name, desc=factory.description)

    async def stop(self) -> None:
        """Stop every bridge (errors are logged)."""
        for reg_id, bridge in self.bridges.items():
            try:
                await maybeDeferred(bridge.stop)
            except Exception:
                log.failure("Stopping bridge {id} failed", id=reg_id)

    async def deliver(self, reg: Registration, txn_id: str, body: dict[str, Any]) -> None:
        """The sender's delivery: a method call for bridges, HTTP for the others."""
        bridge = self.bridges.get(reg.id)
        if bridge is None:
            await self.push(reg, txn_id, body)
            return
        await maybeDeferred(bridge.on_transaction, txn_id, body)
