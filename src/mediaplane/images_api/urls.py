"""`authgearimages:///APP_ID/OBJECT_ID` URLs: how a profile attribute points at an image."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mediaplane.errors import InvalidInput

SCHEME_PREFIX = "authgearimages:///"
# App ids follow Authgear's (lowercase, digits, dashes); object ids are ours (URL-safe tokens).
APP_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
OBJECT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class ImageRef:
    app_id: str
    object_id: str

    @property
    def storage_key(self) -> str:
        return f"{self.app_id}/{self.object_id}"

    def variant_key(self, option: str, version: int) -> str:
        # `_variants` cannot collide with an app id: app ids have no underscore.
        return f"_variants/v{version}/{self.app_id}/{self.object_id}/{option}"

    @property
    def images_url(self) -> str:
        return f"{SCHEME_PREFIX}{self.app_id}/{self.object_id}"

    def public_url(self, *, images_host: str | None, app_host: str) -> str:
        """The HTTPS `profile` URL: on IMAGES_HOST (a CDN) when set, else on the app's host."""
        origin = images_origin(images_host or app_host)
        return f"{origin}/_images/{self.app_id}/{self.object_id}/profile"


def images_origin(host: str) -> str:
    """`https://HOST`, or HOST itself when it already carries a scheme (dev: http://...)."""
    return host.rstrip("/") if "://" in host else f"https://{host}"


def check_ids(app_id: str, object_id: str) -> ImageRef:
    if not APP_ID_RE.match(app_id):
        raise InvalidInput("invalid_app_id", f"invalid app id {app_id!r}")
    if not OBJECT_ID_RE.match(object_id):
        raise InvalidInput("invalid_object_id", f"invalid object id {object_id!r}")
    return ImageRef(app_id, object_id)


def parse_images_url(url: str) -> ImageRef:
    """Validate the form `authgearimages:///APP_ID/OBJECT_ID` (and nothing else: no lookup)."""
    if not url.startswith(SCHEME_PREFIX):
        raise InvalidInput("invalid_images_url", "expected authgearimages:///APP_ID/OBJECT_ID")
    parts = url[len(SCHEME_PREFIX) :].split("/")
    if len(parts) != 2:
        raise InvalidInput("invalid_images_url", "expected authgearimages:///APP_ID/OBJECT_ID")
    return check_ids(parts[0], parts[1])
