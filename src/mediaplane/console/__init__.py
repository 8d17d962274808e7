"""The web console: a static single-page client of the public API, served at `/`.

Everything it does goes through the public HTTP API with a bearer token; the only endpoints of
its own are the dev sign-in (`POST /console/dev-token`, on only while the dev JWT key signs
tokens) and `GET /console/config`, which tells the page whether that sign-in is available.
"""

from mediaplane.console.routes import mount_console, router

__all__ = ["mount_console", "router"]
