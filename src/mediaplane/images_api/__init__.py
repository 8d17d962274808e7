"""The Authgear-compatible Images server: signed uploads, resized GETs, signed-URL issuing."""

from mediaplane.images_api.routes import router
from mediaplane.images_api.signing import UploadSigner, key_from_setting
from mediaplane.images_api.urls import ImageRef, parse_images_url

__all__ = ["ImageRef", "UploadSigner", "key_from_setting", "parse_images_url", "router"]
