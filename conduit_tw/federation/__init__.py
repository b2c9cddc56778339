"""Federation: the transport, keys and the rooms protocol (server-server-api)."""
