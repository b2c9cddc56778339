"""Server-server API endpoints."""
