"""Typed access per domain over key-value trees (no HTTP, no policy)."""
