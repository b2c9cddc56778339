"""In-process bridges shipped with conduit-tw (docs/plugins/bridges.md)."""
