"""Small helpers shared by handlers and stores (no Matrix knowledge)."""
