"""
Load the TLS stack (pyOpenSSL, C{cryptography}, libssl) and HTTP/2 (C{h2},
C{hpack}, C{hyperframe}: spoken only over TLS) on first use rather than
with the reactor and C{twisted.web}: about 20 MB of the idle footprint of a
server that has no TLS listener and has not federated yet
(docs/architecture.md, "Memory floor").

Twisted's reactor imports C{twisted.protocols.tls} and
C{twisted.internet.ssl} (hence OpenSSL) at module level, in
C{twisted.internet.posixbase} and C{twisted.internet._newtls}, although it
uses them only in C{connectSSL}, C{listenSSL} and C{startTLS}; and
C{twisted.web.http} imports C{twisted.web._http2} (hence C{h2}, when it is
installed) although it builds its C{H2Connection} only once a client chose
C{h2} by ALPN, in a TLS handshake. L{install}, called before the reactor
is imported (by C{conduit_tw.tap}), puts a L{_LazyModule} in
C{sys.modules} for each of these modules: the first attribute read on it
(any TLS use, by Twisted or by us: C{import twisted.internet.ssl} then
C{ssl.CertificateOptions}, C{from twisted.internet.ssl import ...})
imports the real module, which replaces it in C{sys.modules}. The names
bound at import by the modules that import them, C{TLSMemoryBIOFactory}
and C{H2Connection}, are stand-in classes whose construction builds the
real object. Nothing else changes: C{twisted.web.http.H2_ENABLED} is what
it would be (HTTP/2 is offered by ALPN exactly when C{h2} and C{priority}
are installed; when one is missing, C{H2Connection} raises the
C{ImportError} the real import would, without importing C{h2} for
nothing first as Twisted does); when the reactor (or C{twisted.web.http})
was already imported (trial, an embedding application) L{install} leaves
it alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any, Callable

_TLS = ("twisted.protocols.tls", "twisted.internet.ssl")
_HTTP2 = "twisted.web._http2"


class _LazyModule(types.ModuleType):
    """Stands for a module in C{sys.modules} until one of its attributes is read."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        stand_in = _STAND_INS.get((self.__name__, name))
        if stand_in is not None:
            return stand_in()
        return getattr(_load(self.__name__), name)


class _LazyTLSMemoryBIOFactory:
    """C{twisted.protocols.tls.TLSMemoryBIOFactory}, imported when first built."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _load("twisted.protocols.tls").TLSMemoryBIOFactory(*args, **kwargs)


class _LazyH2Connection:
    """C{twisted.web._http2.H2Connection}, imported when a client first chooses C{h2}."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _load(_HTTP2).H2Connection(*args, **kwargs)


def _h2_connection() -> type:
    """
    What C{from twisted.web._http2 import H2Connection} gets: the stand-in
    class, or the C{ImportError} of the real import when C{h2} or
    C{priority} is not installed (Twisted then disables HTTP/2).
    """
    missing = [name for name in ("h2", "priority") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"{_HTTP2} needs {' and '.join(missing)}", name=missing[0])
    return _LazyH2Connection


#: The names that modules bind at import ("from m import Name"): what they get.
_STAND_INS: dict[tuple[str, str], Callable[[], type]] = {
    ("twisted.protocols.tls", "TLSMemoryBIOFactory"): lambda: _LazyTLSMemoryBIOFactory,
    (_HTTP2, "H2Connection"): _h2_connection,
}


def _load(name: str) -> types.ModuleType:
    """The real module C{name}, imported now if only its stand-in was there."""
    module = sys.modules.get(name)
    if isinstance(module, _LazyModule):
        del sys.modules[name]
        try:
            module = importlib.import_module(name)
        except BaseException:
            sys.modules[name] = module  # keep the stand-in; the error is the caller's
            raise
    elif module is None:
        module = importlib.import_module(name)
    return module


def _stand_in(name: str) -> None:
    """Put a L{_LazyModule} for C{name} in C{sys.modules} and on its package."""
    parent, _, child = name.rpartition(".")
    stand_in = sys.modules[name] = _LazyModule(name)
    # "import twisted.internet.ssl; twisted.internet.ssl.X" reads the
    # attribute of the package, which the import system sets only when
    # it loads the module itself (as _load does).
    setattr(importlib.import_module(parent), child, stand_in)


def install() -> bool:
    """
    Make the TLS and HTTP/2 modules lazy (see the module docstring), before
    the reactor and C{twisted.web} are imported; return whether anything was
    made lazy (C{False} if they were imported already: nothing is done then).
    """
    done = False
    if not any(
        name in sys.modules
        for name in (*_TLS, "twisted.internet.reactor", "twisted.internet._newtls", "OpenSSL")
    ):
        for name in _TLS:
            _stand_in(name)
        done = True
    if not any(name in sys.modules for name in (_HTTP2, "twisted.web.http", "h2")):
        _stand_in(_HTTP2)
        done = True
    return done
