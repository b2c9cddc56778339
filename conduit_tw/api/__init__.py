"""twisted.web resources: parse, authenticate, call a handler, answer JSON."""
