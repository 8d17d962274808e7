"""The derivative work of a photo's steps: read the original, render, write deterministic keys.

Running a step twice writes the same keys with the same bytes: jobs are idempotent by
construction, so a retry after a crash is always safe.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from mediaplane.imaging import Fit, ImageLimits, Original, make_thumbnails, make_watermarked
from mediaplane.settings import Settings
from mediaplane.storage import ObjectStore
from mediaplane.uploads import PendingUpload
from mediaplane.uploads.keys import derivative_key
from mediaplane.uploads.service import accepted_key

THUMBNAIL_WIDTHS = (400, 800)


def limits_of(settings: Settings) -> ImageLimits:
    return ImageLimits(max_pixels=settings.max_image_pixels, max_bytes=settings.photo_max_bytes)


def original_of(
    store: ObjectStore, settings: Settings, photo: PendingUpload, fits: Sequence[Fit] = ()
) -> Original:
    """The upload's accepted bytes (read on first use: whatever reached the key after the
    upload settled is not the input), decoded once for `fits`."""
    return Original(lambda: store.read(accepted_key(photo)), limits_of(settings), fits)


def thumbnails(
    store: ObjectStore, settings: Settings, photo: PendingUpload, original: Original
) -> dict[str, object]:
    """`thumb-400.jpg` and `thumb-800.jpg`; returns facts to record on the photo."""
    assert photo.project_id is not None
    outputs = make_thumbnails(
        original,
        widths=THUMBNAIL_WIDTHS,
        quality=settings.thumbnail_quality,
        limits=limits_of(settings),
    )
    for width, image in outputs.items():
        key = derivative_key(photo.project_id, photo.id, f"thumb-{width}")
        store.put(key, io.BytesIO(image.data), content_type=image.content_type)
    width, height = original.upright_size()
    return {"width": width, "height": height, "derivatives": [f"thumb-{w}" for w in outputs]}


def watermark(
    store: ObjectStore, settings: Settings, photo: PendingUpload, original: Original
) -> dict[str, object]:
    """`watermarked.jpg`: upright, long edge capped, text overlay, metadata stripped."""
    assert photo.project_id is not None
    text = settings.watermark_text.format(project=str(photo.project_id)[:8])
    image = make_watermarked(
        original, text=text, max_edge=settings.watermark_max_edge, limits=limits_of(settings)
    )
    key = derivative_key(photo.project_id, photo.id, "watermarked")
    store.put(key, io.BytesIO(image.data), content_type=image.content_type)
    return {"derivatives": ["watermarked"]}
