"""Mediaplane: a self-hostable media service (Media API + Authgear-compatible Images server)."""

__version__ = "0.1.0"
