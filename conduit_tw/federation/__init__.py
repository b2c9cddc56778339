"""Server-server federation: the outgoing client, keys, the transaction sender and receiver."""
