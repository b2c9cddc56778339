"""
The errors of the outgoing HTTP client (L{conduit_tw.http.client}), in a module
of their own so that callers can catch them without importing the client (and
its TLS stack) before the first outgoing request.
"""

from __future__ import annotations

from typing import Sequence


class OutgoingRequestError(Exception):
    """An outgoing request failed for a reason this client enforces."""


class InvalidURLError(OutgoingRequestError, ValueError):
    """The URL is not an absolute http(s) URL with a host."""


class DeniedDestinationError(OutgoingRequestError):
    """
    Every address the host resolved to is in C{ip_range_denylist}: no
    connection was attempted.
    """

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        super().__init__(
            f"Refusing to connect to {host!r}: "
            f"{', '.join(addresses)} {'is' if len(addresses) == 1 else 'are'} in ip_range_denylist"
        )
        self.host = host
        self.addresses = list(addresses)


class ResponseTooLargeError(OutgoingRequestError):
    """The response body exceeded C{max_size}; the connection was aborted."""

    def __init__(self, max_size: int) -> None:
        super().__init__(f"Response body larger than {max_size} bytes")
        self.max_size = max_size


class RequestTimeoutError(OutgoingRequestError):
    """The request did not complete within its total timeout."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"Request timed out after {timeout}s")
        self.timeout = timeout
