"""conduit-tw: a Matrix homeserver on Twisted, in the spirit of Conduit."""

__version__ = "0.1.0"
