"""Storage: ordered key-value trees behind zope.interface, and typed stores."""
