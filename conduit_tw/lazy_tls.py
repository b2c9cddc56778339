"""
Load the TLS stack (pyOpenSSL, C{cryptography}, libssl) on first use rather
than with the reactor: about 20 MB of the idle footprint of a server that
has no TLS listener and has not federated yet (docs/architecture.md,
"Memory floor").

Twisted's reactor imports C{twisted.protocols.tls} and
C{twisted.internet.ssl} (hence OpenSSL) at module level, in
C{twisted.internet.posixbase} and C{twisted.internet._newtls}, although it
uses them only in C{connectSSL}, C{listenSSL} and C{startTLS}. L{install},
called before the reactor is imported (by C{conduit_tw.tap}), puts a
L{_LazyModule} in C{sys.modules} for each of the two modules: the first attribute read on it (any TLS use, by
Twisted or by us: C{import twisted.internet.ssl} then
C{ssl.CertificateOptions}, C{from twisted.internet.ssl import ...})
imports the real module, which replaces it in C{sys.modules}. The one name
the reactor binds at import, C{TLSMemoryBIOFactory}, is a stand-in class
whose construction builds the real factory. Nothing else changes; when the
reactor was already imported (trial, an embedding application) L{install}
does nothing.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_LAZY = ("twisted.protocols.tls", "twisted.internet.ssl")


class _LazyModule(types.ModuleType):
    """Stands for a module in C{sys.modules} until one of its attributes is read."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        if name == "TLSMemoryBIOFactory" and self.__name__ == "twisted.protocols.tls":
            return _LazyTLSMemoryBIOFactory
        return getattr(_load(self.__name__), name)


class _LazyTLSMemoryBIOFactory:
    """C{twisted.protocols.tls.TLSMemoryBIOFactory}, imported when first built."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _load("twisted.protocols.tls").TLSMemoryBIOFactory(*args, **kwargs)


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


def install() -> bool:
    """
    Make the TLS modules lazy (see the module docstring), before the
    reactor is imported; return whether they are (C{False} if the reactor
    or TLS was imported already: nothing is done then).
    """
    if any(
        name in sys.modules
        for name in (*_LAZY, "twisted.internet.reactor", "twisted.internet._newtls", "OpenSSL")
    ):
        return False
    for name in _LAZY:
        parent, _, child = name.rpartition(".")
        stand_in = sys.modules[name] = _LazyModule(name)
        # "import twisted.internet.ssl; twisted.internet.ssl.X" reads the
        # attribute of the package, which the import system sets only when
        # it loads the module itself (as _load does).
        setattr(importlib.import_module(parent), child, stand_in)
    return True
