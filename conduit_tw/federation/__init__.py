"""
Federation: talking to other homeservers (server-server-api).

  - L{xmatrix}: the X-Matrix C{Authorization} scheme (sign, parse, verify).
  - L{auth}: inbound request authentication for federation servlets.
  - L{acl}: room server ACLs (C{m.room.server_acl}).
  - L{discovery}: server name resolution (literal, port, .well-known, SRV, 8448).
  - L{client}: the outgoing, signed federation client.
  - L{errors}: the errors of all of the above.
  - L{sender}: outgoing transactions, queued per destination in the database.
  - L{transactions}: incoming transactions (C{PUT /send/{txnId}}).
  - L{edu}: typing, receipts and presence EDUs both ways; our events to the sender.
"""
