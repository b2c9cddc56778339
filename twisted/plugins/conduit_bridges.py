"""
Dropin: conduit-tw's built-in in-process bridges, found with
C{getPlugins(IAppserviceBridgeFactory)} and enabled by name in
C{appservice_bridges} (docs/plugins/bridges.md). (Never add
C{twisted/plugins/__init__.py}.)
"""

from conduit_tw.bridges.webhook import WebhookBridgeFactory

webhook = WebhookBridgeFactory()
