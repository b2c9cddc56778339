"""The C{conduit} twistd plugin: C{twistd -n conduit --config conduit.toml}."""

from twisted.application.service import ServiceMaker

conduit = ServiceMaker(
    "conduit-tw Matrix homeserver",
    "conduit_tw.tap",
    "A lightweight Matrix homeserver (Conduit-compatible conduit.toml).",
    "conduit",
)
