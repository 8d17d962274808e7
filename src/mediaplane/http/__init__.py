"""Request limits, in one place: what a client may send and how long it may take.

`limits.py` holds the numbers (from settings) and the body limit every non-upload route gets;
`server.py` runs uvicorn with the connection-level guards it lacks (header deadline and size,
body idle timeout, connection cap). docs/security.md lists them with their defaults.
"""

from mediaplane.http.limits import BodyLimit, HttpLimits, StreamedRoute

__all__ = ["BodyLimit", "HttpLimits", "StreamedRoute"]
