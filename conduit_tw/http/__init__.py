"""Outgoing HTTP: the one shared client every outgoing request goes through."""
