"""What HEIC costs per 12 MP photo, next to JPEG, measured in the same run.

The photo is the photo-like 4000×3000 picture of bench/derivatives.py, encoded once as JPEG
(Q90, libvips) and once as HEIC (x265 via pillow-heif, quality 80; cached under /tmp, as x265
takes tens of seconds for 12 MP). Each is taken through what an upload costs here, one core
(VIPS_CONCURRENCY=1), best of `--rounds`:

- decode: JPEG full decode in libvips; HEIC decode by libheif/libde265 plus the uncompressed
  TIFF libvips reads (mediaplane.imaging.heif);
- accept: `inspect_image` (header checks + the verifying decode);
- thumbnails: `make_thumbnails` (400 + 800 px), the photo flow's first step.

HEIC cannot shrink on load (a JPEG decodes at 1/8 scale for a 400 px thumbnail), so its cost
is the full decode every time; the module caches the decoded TIFF for the last two sources,
which the thumbnail figure includes (inspect then render: one decode).

    .venv/bin/python bench/heic.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VIPS_CONCURRENCY", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from derivatives import make_photo_jpeg

CACHE = Path("/tmp/mediaplane-bench-heic")
RESULTS = Path(__file__).resolve().parent / "results" / "heic.json"


def photos() -> tuple[bytes, bytes]:
    CACHE.mkdir(exist_ok=True)
    jpeg = CACHE / "photo-12mp.jpg"
    heic = CACHE / "photo-12mp.heic"
    if not jpeg.exists():
        make_photo_jpeg(jpeg, 4000, 3000, 1)
    if not heic.exists():
        import pillow_heif
        from PIL import Image

        started = time.perf_counter()
        image = Image.open(jpeg)
        pillow_heif.from_pillow(image).save(str(heic), quality=80)
        print(f"encoded the HEIC once in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return jpeg.read_bytes(), heic.read_bytes()


def best_of(rounds: int, work) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import pyvips

    from mediaplane.imaging import ImageLimits, heif, inspect_image, make_thumbnails

    jpeg, heic = photos()
    limits = ImageLimits(max_pixels=50_000_000, max_bytes=100 * 1024 * 1024)

    def decode_jpeg() -> None:
        pyvips.Image.new_from_buffer(jpeg, "").avg()

    def decode_heic() -> None:
        heif._decode.cache_clear()
        pyvips.Image.new_from_buffer(heif.decoded_tiff(heic), "").avg()

    def accept(data: bytes):
        def run() -> None:
            heif._decode.cache_clear()
            inspect_image(data, limits)

        return run

    def thumbs(data: bytes):
        def run() -> None:
            heif._decode.cache_clear()
            inspect_image(data, limits)
            make_thumbnails(data, widths=[400, 800], limits=limits)

        return run

    figures = {
        "bytes": {"jpeg": len(jpeg), "heic": len(heic)},
        "decode_ms": {
            "jpeg": best_of(args.rounds, decode_jpeg),
            "heic": best_of(args.rounds, decode_heic),
        },
        "accept_ms": {
            "jpeg": best_of(args.rounds, accept(jpeg)),
            "heic": best_of(args.rounds, accept(heic)),
        },
        "accept_and_thumbnails_ms": {
            "jpeg": best_of(args.rounds, thumbs(jpeg)),
            "heic": best_of(args.rounds, thumbs(heic)),
        },
    }
    print(f"12 MP photo, CPU ms on one core, best of {args.rounds}:")
    print(f"{'':28}{'JPEG':>10}{'HEIC':>10}{'HEIC/JPEG':>11}")
    print(f"{'file size (KB)':28}{len(jpeg) // 1024:>10}{len(heic) // 1024:>10}")
    for name in ("decode_ms", "accept_ms", "accept_and_thumbnails_ms"):
        j, h = figures[name]["jpeg"], figures[name]["heic"]
        print(f"{name:28}{j:>10.0f}{h:>10.0f}{h / j:>10.1f}×")
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
