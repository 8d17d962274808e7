"""Peak memory of image decodes: what the decode budget charges against what each decode holds,
and a burst of concurrent renders with and without the budget (the figures of docs/operations.md,
"Memory budget").

Each measurement runs in a fresh subprocess and reads its own VmHWM (peak RSS) from
/proc/self/status, so one measurement never inherits another's heap.

    .venv/bin/python bench/decode_memory.py            # 49 MP sources, ~2 min on 2 cores
    .venv/bin/python bench/decode_memory.py --quick    # 12 MP sources, burst of 8

Peers in the same run: the burst is measured as the service ran before issue 9 (libvips'
operation cache at 16, no budget) and as it runs now. (Both with the fixed malloc threshold,
which importing mediaplane.imaging sets; its own effect is measured in docs/operations.md.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

SOURCES = {
    "progressive JPEG": ("jpg", {"Q": 85, "interlace": True}),
    "baseline JPEG": ("jpg", {"Q": 85}),
    "PNG": ("png", {"compression": 1}),
    "interlaced PNG": ("png", {"compression": 1, "interlace": True}),
    "WebP": ("webp", {"Q": 70}),
}

# One measurement, in its own process: argv = file, operation, mode ("now" or "before").
_MEASURE = r"""
import sys, threading
from pathlib import Path
path, operation, mode, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) // 1024

import pyvips
from mediaplane.imaging import ImageLimits, inspect_image, make_thumbnails, render_profile
from mediaplane.imaging.budget import DECODE_BUDGET, decode_bytes_of_prefix
if mode == "before":
    pyvips.cache_set_max(16)
    DECODE_BUDGET.resize(1 << 50)
data = Path(path).read_bytes()
limits = ImageLimits(max_pixels=60_000_000, max_bytes=200_000_000)
run = {
    "profile": lambda: render_profile(data, limits),
    "inspect": lambda: inspect_image(data, limits),
    "thumbnails": lambda: make_thumbnails(data, limits=limits),
}[operation]
base = status("VmRSS")
workers = [threading.Thread(target=run) for _ in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(status("VmHWM") - base, status("VmRSS") - base, decode_bytes_of_prefix(data) // (1 << 20))
"""


def make_sources(directory: Path, width: int, height: int) -> dict[str, Path]:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tests.imaging.factories import picture

    image = picture(width, height).copy_memory()
    paths = {}
    for name, (suffix, options) in SOURCES.items():
        path = directory / f"{name.replace(' ', '-')}.{suffix}"
        image.write_to_file(str(path), **options)
        paths[name] = path
    return paths


def measure(path: Path, operation: str, mode: str, threads: int = 1) -> tuple[int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), operation, mode, str(threads)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    peak, kept, charged = (int(x) for x in out[-3:])
    return peak, kept, charged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 MP sources, burst of 8")
    args = parser.parse_args()
    width, height, burst = (4000, 3000, 8) if args.quick else (7000, 7000, 16)
    started = time.monotonic()
    results: dict[str, object] = {"pixels": width * height}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_sources(Path(tmp), width, height)
        print(f"{width}×{height} = {width * height / 1e6:.0f} MP; MB of peak RSS growth")
        print(f"{'source':<18} {'charged':>8} {'profile':>8} {'inspect':>8} {'thumbs':>8}")
        per_source = {}
        for name, path in paths.items():
            row = {op: measure(path, op, "now") for op in ("profile", "inspect", "thumbnails")}
            charged = row["profile"][2]
            per_source[name] = {"charged_mb": charged, **{op: v[0] for op, v in row.items()}}
            print(
                f"{name:<18} {charged:>8} {row['profile'][0]:>8} {row['inspect'][0]:>8} "
                f"{row['thumbnails'][0]:>8}"
            )
        results["single"] = per_source

        source = paths["progressive JPEG"]
        before = measure(source, "profile", "before", burst)
        now = measure(source, "profile", "now", burst)
        results["burst"] = {
            "requests": burst,
            "before": {"peak_mb": before[0], "kept_mb": before[1]},
            "now": {"peak_mb": now[0], "kept_mb": now[1]},
        }
        print(f"\n{burst} concurrent profile renders of the progressive JPEG:")
        print(f"  before issue 9 (cache 16, no budget): +{before[0]} MB peak, +{before[1]} MB kept")
        print(f"  now (no cache, budget):               +{now[0]} MB peak, +{now[1]} MB kept")
        print(f"  ratio before / now: peak {before[0] / max(now[0], 1):.1f}×")
    results["seconds"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"decode_memory{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
