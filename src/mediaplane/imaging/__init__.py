"""Image checks and renditions on untrusted bytes, with libvips (pyvips).

- `inspect_image`: is an upload an image within `ImageLimits`, and what is it?
- `make_thumbnails`, `make_watermarked`: a photo's derivatives, from its bytes or from an
  `Original` that decodes them once for several (`Fit` boxes).
- `render_profile`: the 240×240 `profile` avatar, upright, sRGB, metadata stripped.
- `sniff_format`: the format from the magic bytes (never from the client's content type).

Every refusal is an `ImageRejected` (or `ImageTooLarge`) with a stable `reason`; no libvips
error leaves this package.
"""

from __future__ import annotations

import pyvips

from mediaplane.imaging.budget import return_freed_memory_promptly
from mediaplane.imaging.derivatives import (
    Fit,
    Original,
    make_thumbnails,
    make_watermarked,
    preview_fit,
    thumbnail_fit,
)
from mediaplane.imaging.errors import ImageRejected, ImageTooLarge
from mediaplane.imaging.formats import ImageFormat, sniff_format
from mediaplane.imaging.inspect import ImageInfo, inspect_image
from mediaplane.imaging.limits import ImageLimits
from mediaplane.imaging.profile import RenderedImage, render_counter, render_profile

# Only libvips' fuzzed, trusted loaders (JPEG, PNG, WebP, GIF, HEIF...) may run. The untrusted
# ones (SVG in this build; ImageMagick, Matlab, FITS in others) are attack surface we never
# need, and libvips picks a loader by itself from a file's bytes. Process-wide, on purpose.
pyvips.block_untrusted_set(True)

# libvips caches recent operations to reuse their results. Every request here brings new bytes,
# so hits across requests do not happen, while each cached operation pins its input and its
# decoder's state: a cached load of a progressive JPEG keeps all its DCT coefficients (147 MB
# for 49 MP) alive after the request. Measured: with 16 cached operations one 49 MP profile
# render left +146 MB resident, with 0 it left +4 MB, and 16 renders of such photos pinned
# ~2.4 GB. Render and inspect times were the same with 0, 16 or 100. So: no operation cache;
# memory for decodes is bounded by the decode budget (budget.py) instead.
pyvips.cache_set_max(0)
return_freed_memory_promptly()

__all__ = [
    "Fit",
    "ImageFormat",
    "ImageInfo",
    "ImageLimits",
    "ImageRejected",
    "ImageTooLarge",
    "Original",
    "RenderedImage",
    "inspect_image",
    "make_thumbnails",
    "make_watermarked",
    "preview_fit",
    "render_counter",
    "render_profile",
    "sniff_format",
    "thumbnail_fit",
]
