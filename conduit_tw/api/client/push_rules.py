"""
Push rules (client-server-api "Push Rules: API", pushrules.yaml):

- C{GET /_matrix/client/v3/pushrules/} and C{GET .../pushrules/global/}
- C{GET|PUT|DELETE .../pushrules/global/{kind}/{ruleId}} (C{?before=}/C{?after=} on PUT)
- C{GET|PUT .../pushrules/global/{kind}/{ruleId}/enabled}
- C{GET|PUT .../pushrules/global/{kind}/{ruleId}/actions}

C{global} is the only scope; another is 400 M_INVALID_PARAM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit_tw.api.client._paths import client_route
from conduit_tw.api.resource import MatrixRequest
from conduit_tw.api.router import Router
from conduit_tw.errors import invalid_param, missing_param

if TYPE_CHECKING:
    from conduit_tw.homeserver import HomeServer

RULE = "/pushrules/{scope}/{kind}/{rule_id}"


def _scope(scope: str) -> None:
    if scope != "global":
        raise invalid_param("The only push rule scope is 'global'.")


def register(router: Router, hs: "HomeServer") -> None:
    """Mount the push rule endpoints."""
    handler = hs.push_rules

    async def get_all(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        return {"global": await handler.get_ruleset(requester.user_id)}

    async def get_global(request: MatrixRequest):
        requester = await hs.auth.get_requester(request)
        return await handler.get_ruleset(requester.user_id)

    async def rule_owner(request: MatrixRequest, scope: str, write: bool = False) -> str:
        """
        The requester's user ID, once the token and C{scope} are checked
        (and, for a change, C{rc_account_data}: push rules are account data).
        """
        requester = await hs.auth.get_requester(request)
        _scope(scope)
        if write:
            await hs.ratelimit.check_requester(hs.ratelimit.account_data, requester)
        return requester.user_id

    async def get_rule(request: MatrixRequest, scope: str, kind: str, rule_id: str):
        user_id = await rule_owner(request, scope)
        return await handler.get_rule(user_id, kind, rule_id)

    async def put_rule(request: MatrixRequest, scope: str, kind: str, rule_id: str):
        user_id = await rule_owner(request, scope, write=True)
        await handler.set_rule(
            user_id, kind, rule_id, request.json_object(),
            before=request.arg("before"), after=request.arg("after"),
        )
        return {}

    async def delete_rule(request: MatrixRequest, scope: str, kind: str, rule_id: str):
        user_id = await rule_owner(request, scope, write=True)
        await handler.delete_rule(user_id, kind, rule_id)
        return {}

    def attribute(attr: str):
        async def get_attr(request: MatrixRequest, scope: str, kind: str, rule_id: str):
            user_id = await rule_owner(request, scope)
            rule = await handler.get_rule(user_id, kind, rule_id)
            return {attr: rule[attr]}

        async def put_attr(request: MatrixRequest, scope: str, kind: str, rule_id: str):
            user_id = await rule_owner(request, scope, write=True)
            body = request.json_object()
            if attr not in body:
                raise missing_param(f"Missing '{attr}'.")
            await handler.set_attribute(user_id, kind, rule_id, attr, body[attr])
            return {}

        return get_attr, put_attr

    client_route(router, "GET", "/pushrules", get_all)
    client_route(router, "GET", "/pushrules/global", get_global)
    client_route(router, "GET", RULE, get_rule)
    client_route(router, "PUT", RULE, put_rule)
    client_route(router, "DELETE", RULE, delete_rule)
    for attr in ("enabled", "actions"):
        get_attr, put_attr = attribute(attr)
        client_route(router, "GET", f"{RULE}/{attr}", get_attr)
        client_route(router, "PUT", f"{RULE}/{attr}", put_attr)
