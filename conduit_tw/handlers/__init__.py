"""Business logic per domain."""
