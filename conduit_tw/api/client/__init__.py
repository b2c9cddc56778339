"""Client-server API endpoints, one module per spec chapter."""
