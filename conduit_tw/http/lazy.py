"""
The shared outgoing HTTP client, built on first use.

L{conduit_tw.http.client} imports twisted.internet.endpoints and the TLS
client machinery, about 13 MB of memory, which a small server that has no pusher (and, until
federation lands, nothing else talking out) never needs: the start-up
footprint (docs/architecture.md) stays without them until the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed

if TYPE_CHECKING:
    from conduit_tw.http.client import OutgoingHTTPClient


class LazyOutgoingHTTPClient:
    """Stands in for L{OutgoingHTTPClient}; builds it on first attribute use."""

    def __init__(self, reactor: Any, config: Any, **options: Any) -> None:
        self._reactor = reactor
        self._config = config
        #: Keyword arguments of L{OutgoingHTTPClient} (timeouts, pool size).
        self._options = options
        self._client: "OutgoingHTTPClient | None" = None

    @property
    def client(self) -> "OutgoingHTTPClient":
        """The real client (created now if it was not yet)."""
        if self._client is None:
            from conduit_tw.http.client import OutgoingHTTPClient

            self._client = OutgoingHTTPClient(self._reactor, self._config, **self._options)
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def close(self) -> Deferred[None]:
        """Close the pool's idle connections; nothing to do if never used."""
        if self._client is None:
            return succeed(None)
        return self._client.close()
