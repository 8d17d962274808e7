"""Benchmark of photo derivatives (400 + 800 px thumbnails, watermark) against Sharp and Pillow.

    .venv/bin/python bench/derivatives.py            # ~3 min on 2 cores (3 rounds × 3 s)
    .venv/bin/python bench/derivatives.py --quick    # ~30 s (1 round × 1 s)

Three contenders do the same work on the same photos, each alone on one pinned core (the goals,
printed as PASS/MISS: Mediaplane ≥ 1.2× "sharp, one decode" and ≥ 1.3× Pillow's photos per
CPU-second, issue 13):

1. Mediaplane: `make_thumbnails` (400 and 800 px wide, JPEG Q82, progressive, upright, sRGB,
   metadata stripped; never upscaled) and, reported on its own line, `make_watermarked`.
2. Sharp (Node; `npm install` into bench/sharp/ on the first run, then reused): two pipelines
   per photo, `rotate().resize({width, withoutEnlargement}).toColourspace("srgb")
   .jpeg({quality: 82, progressive: true, mozjpeg: false})`; Sharp strips metadata by default.
   Also shown, with no goal: "sharp, one decode", decoding once to 800 px raw pixels and
   encoding that and a 400 px resize of it (Mediaplane's approach, hand-written in Sharp).
3. Pillow: `draft()` (JPEG shrink-on-load), `exif_transpose`, ICC → sRGB, RGB, LANCZOS resize
   to 800 and 400 from one decode, progressive JPEG Q82 with no EXIF, ICC or comment.

Input classes: the real photos of tests/fixtures (faces and EXIF orientations, 0.7–2.8 MP),
a generated 12 MP JPEG and a generated 24 MP JPEG (EXIF orientation 6), cached under /tmp.

Each (round, class, contender) is one child process pinned to one core (`taskset`), with
`VIPS_CONCURRENCY=1`, `UV_THREADPOOL_SIZE=1` and `sharp.concurrency(1)`: it reads its photos
into memory, runs one warm-up pass (whose outputs the parent checks: size, progressive, sRGB,
no metadata), then whole passes until the pass time is spent, and reports photos, wall and CPU
seconds, and its peak RSS (`ru_maxrss`). Rounds interleave the contenders in rotating order, and
the median round is reported. Results: a table on stdout, JSON in bench/results/derivatives.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
RESULTS = ROOT / "bench" / "results" / "derivatives.json"
SHARP_DIR = ROOT / "bench" / "sharp"
SHARP_VERSION = "0.35.5"  # also pinned in bench/sharp/package.json
CACHE = Path(tempfile.gettempdir()) / "mediaplane-bench-derivatives"

WIDTHS = (400, 800)
QUALITY = 82
WATERMARK_TEXT = "© Acme Photo · preview"
WATERMARK_MAX_EDGE = 2048
MAX_PIXELS = 50_000_000  # the service's defaults (settings: MAX_IMAGE_PIXELS, IMAGES_MAX_BYTES)
MAX_BYTES = 50 * 1024 * 1024

# Goals: Mediaplane's photos per CPU-second divided by the peer's (issue 13): equal work is
# Sharp decoding once, as Mediaplane does; Sharp's idiomatic two pipelines are shown beside it.
GOALS = {"sharp_one_decode": 1.2, "pillow": 1.3}
INFO_PEERS = ("sharp",)
# The watermarked preview against round 1's pipeline (full decode to exactly 2048 px, overlay
# rendered per photo, progressive: kept here as `mediaplane_watermark_r1`) and against Sharp
# compositing the same tiled text block into a preview of the same size.
WATERMARK_GOALS = {"mediaplane_watermark_r1": 2.5}
WATERMARK_INFO_PEERS = ("sharp_watermark",)

CONTENDERS = (
    "mediaplane",
    "sharp",
    "sharp_one_decode",
    "pillow",
    "mediaplane_watermark",
    "mediaplane_watermark_r1",
    "sharp_watermark",
)
WATERMARK_CONTENDERS = ("mediaplane_watermark", "mediaplane_watermark_r1", "sharp_watermark")
LABELS = {
    "mediaplane": "mediaplane",
    "sharp": "sharp",
    "sharp_one_decode": "sharp, one decode",
    "pillow": "pillow",
    "mediaplane_watermark": "mediaplane watermark",
    "mediaplane_watermark_r1": "  round-1 watermark",
    "sharp_watermark": "  sharp watermark",
}
CLASSES = ("photos", "12mp", "24mp")
CLASS_LABELS = {"photos": "real photos", "12mp": "12 MP", "24mp": "24 MP"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the photos --------------------------------------------------------------------------------


def make_photo_jpeg(path: Path, width: int, height: int, orientation: int) -> None:
    """A photo-like JPEG at Q90: colour gradients, blotchy texture at two scales (like foliage or
    a wall) and fine sensor-like noise. It compresses like a camera photo (24 MP → ~9 MB)."""
    import pyvips

    w, h = width, height
    xy = pyvips.Image.xyz(w, h)
    x, y = xy[0], xy[1]
    blobs = (
        pyvips.Image.gaussnoise(w // 16 + 1, h // 16 + 1, sigma=30, mean=0)
        .resize(16, kernel="cubic")
        .crop(0, 0, w, h)
    )
    detail = (
        pyvips.Image.gaussnoise(w // 2 + 1, h // 2 + 1, sigma=15, mean=0)
        .resize(2, kernel="linear")
        .crop(0, 0, w, h)
    )
    noise = pyvips.Image.gaussnoise(w, h, sigma=3, mean=0)
    r = x.linear(150 / w, 50) + blobs + detail + noise
    g = y.linear(140 / h, 60) + blobs * 0.8 + detail + noise
    b = (x + y).linear(120 / (w + h), 70) + blobs * 0.5 + detail * 0.8 + noise
    img = r.bandjoin([g, b]).cast("uchar", shift=False).copy(interpretation="srgb")
    if orientation != 1:
        img.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    tmp = path.with_suffix(".part")
    img.jpegsave(str(tmp), Q=90)
    tmp.replace(path)


def input_classes() -> dict[str, list[Path]]:
    """The photos of each class; the generated ones are made once and kept in CACHE."""
    CACHE.mkdir(parents=True, exist_ok=True)
    generated = {}
    # The recipe is in the name: change make_photo_jpeg and bump v1 so old files are not reused.
    for cls, (w, h, orientation) in {"12mp": (4000, 3000, 1), "24mp": (6000, 4000, 6)}.items():
        path = CACHE / f"photo-{w}x{h}-o{orientation}-v1.jpg"
        if not path.exists():
            log(f"generating {path.name}")
            make_photo_jpeg(path, w, h, orientation)
        generated[cls] = [path]
    photos = sorted((FIXTURES / "faces").glob("*.jpg")) + sorted(
        (FIXTURES / "exif-orientation").glob("*.jpg")
    )
    if not photos:
        raise SystemExit(f"fixtures missing under {FIXTURES}")
    return {"photos": photos, **generated}


def upright_size(path: Path) -> tuple[int, int]:
    import pyvips

    img = pyvips.Image.new_from_file(str(path))
    orientation = img.get("orientation") if img.get_typeof("orientation") else 1
    return (img.height, img.width) if orientation in (5, 6, 7, 8) else (img.width, img.height)


# --- the contenders (each runs in its own child process: `derivatives.py --child JOB.json`) ----

Output = tuple[str, int, int, bytes]  # (name, width, height, JPEG bytes)


def mediaplane_contender(kind: str) -> Callable[[bytes], list[Output]]:
    from mediaplane.imaging import ImageLimits, make_thumbnails, make_watermarked

    limits = ImageLimits(max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES)

    def thumbnails(data: bytes) -> list[Output]:
        out = make_thumbnails(data, widths=WIDTHS, quality=QUALITY, limits=limits)
        return [(str(w), r.width, r.height, r.data) for w, r in sorted(out.items())]

    def watermarked(data: bytes) -> list[Output]:
        r = make_watermarked(
            data, text=WATERMARK_TEXT, max_edge=WATERMARK_MAX_EDGE, quality=85, limits=limits
        )
        return [("wm", r.width, r.height, r.data)]

    def watermarked_r1(data: bytes) -> list[Output]:
        from mediaplane.imaging.derivatives import (
            decode_within,
            encode_jpeg,
            opaque_srgb,
            watermark_overlay,
        )
        from mediaplane.imaging.inspect import open_checked

        fmt, header, _ = open_checked(data, limits)
        image = decode_within(
            data, fmt, header, width=WATERMARK_MAX_EDGE, height=WATERMARK_MAX_EDGE
        )
        image = opaque_srgb(image)
        overlay = watermark_overlay.__wrapped__(WATERMARK_TEXT, image.width, image.height)
        image = overlay[1].ifthenelse(overlay[0], image, blend=True)
        r = encode_jpeg(image, quality=85, progressive=True)
        return [("wm", r.width, r.height, r.data)]

    return {"watermark": watermarked, "watermark_r1": watermarked_r1}.get(kind, thumbnails)


def watermark_job(files: list[Path], work: Path) -> dict[str, Any]:
    """What Sharp's watermark mode needs: Mediaplane's output size for each photo, and the
    overlay block for that size as raw RGBA (grey shade ×3 + opacity), written once."""
    from mediaplane.imaging import ImageLimits, make_watermarked
    from mediaplane.imaging.derivatives import watermark_block

    limits = ImageLimits(max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES)
    boxes, overlays = [], []
    for i, f in enumerate(files):
        r = make_watermarked(
            f.read_bytes(), text=WATERMARK_TEXT, max_edge=WATERMARK_MAX_EDGE, limits=limits
        )
        block = watermark_block(WATERMARK_TEXT, r.width, r.height)
        rgba = block[0].bandjoin([block[0], block[0], block[1]])
        raw = work / f"overlay-{i}.raw"
        raw.write_bytes(rgba.write_to_memory())
        boxes.append([r.width, r.height])
        overlays.append({"file": str(raw), "width": rgba.width, "height": rgba.height})
    return {"boxes": boxes, "overlays": overlays}


def pillow_contender() -> Callable[[bytes], list[Output]]:
    from PIL import Image, ImageCms, ImageOps

    srgb = ImageCms.createProfile("sRGB")
    quarter_turns = {5, 6, 7, 8}

    def thumbnails(data: bytes) -> list[Output]:
        im: Image.Image = Image.open(io.BytesIO(data))
        orientation = im.getexif().get(0x0112, 1)
        stored_w, stored_h = im.size
        turned = orientation in quarter_turns
        up_w, up_h = (stored_h, stored_w) if turned else (stored_w, stored_h)
        widest = min(max(WIDTHS), up_w)
        need = (widest, max(1, round(up_h * widest / up_w)))
        # JPEG shrink-on-load: DCT scaling to the smallest 1/2, 1/4, 1/8 at least `need`.
        im.draft("RGB", need[::-1] if turned else need)
        im = ImageOps.exif_transpose(im)
        icc = im.info.get("icc_profile")
        if icc:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            im = ImageCms.profileToProfile(im, src, srgb, outputMode="RGB") or im
        im = im.convert("RGB")
        im.info.clear()  # no comment (COM) carried over to the output
        out = []
        for w in WIDTHS:
            size = (w, max(1, round(up_h * w / up_w))) if w < up_w else (up_w, up_h)
            resized = im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            resized.save(buf, "JPEG", quality=QUALITY, progressive=True)
            out.append((str(w), size[0], size[1], buf.getvalue()))
        return out

    return thumbnails


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_child(job_path: Path) -> int:
    """Time one contender on one class of photos; print one JSON line (as the Node script)."""
    job = json.loads(job_path.read_text())
    cpu = job["cpu"]
    if os.sched_getaffinity(0) != {cpu}:
        os.sched_setaffinity(0, {cpu})  # before libvips starts any thread
    name = job["contender"]
    if name == "pillow":
        work = pillow_contender()
        import PIL

        versions = {"pillow": PIL.__version__}
    else:
        work = mediaplane_contender(name.removeprefix("mediaplane_") or "thumbs")
        import pyvips

        versions = {
            "pyvips": pyvips.__version__,
            "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
        }
    inputs = [Path(f).read_bytes() for f in job["files"]]
    baseline_rss = rss_now()

    outputs = []
    out_dir = Path(job["out_dir"]) if job["out_dir"] else None
    for i, data in enumerate(inputs):
        for tag, w, h, jpeg in work(data):
            file = f"{i}-{tag}.jpg"
            if out_dir:
                (out_dir / file).write_bytes(jpeg)
            outputs.append({"index": i, "file": file, "width": w, "height": h, "bytes": len(jpeg)})

    photos = passes = 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    elapsed = 0.0
    while passes == 0 or elapsed < job["seconds"]:
        for data in inputs:
            work(data)
        photos += len(inputs)
        passes += 1
        elapsed = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    print(
        json.dumps(
            {
                "photos": photos,
                "passes": passes,
                "seconds": elapsed,
                "cpu_seconds": cpu_seconds,
                "baseline_rss": baseline_rss,
                "max_rss": ru1.ru_maxrss * 1024,  # kB on Linux
                "outputs": outputs,
                "versions": versions,
            }
        )
    )
    return 0


# --- Sharp --------------------------------------------------------------------------------------


def ensure_sharp(timeout: float = 180) -> tuple[list[str] | None, str]:
    """The command that runs bench/sharp/thumbnails.mjs, installing Sharp on the first run;
    → (command or None, note saying why not)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node:
        return None, "node is not on PATH"
    installed = SHARP_DIR / "node_modules" / "sharp" / "package.json"

    def version() -> str | None:
        try:
            return str(json.loads(installed.read_text())["version"])
        except (OSError, ValueError, KeyError):
            return None

    if version() != SHARP_VERSION:
        if not npm:
            return None, "npm is not on PATH"
        log(f"installing sharp@{SHARP_VERSION} into {SHARP_DIR.relative_to(ROOT)} (npm)")
        try:
            out = subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--save-exact",
                    f"sharp@{SHARP_VERSION}",
                ],
                cwd=SHARP_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"npm install sharp@{SHARP_VERSION} failed: {exc}"
        if out.returncode != 0 or version() != SHARP_VERSION:
            err = [ln for ln in out.stderr.splitlines() if ln.strip()][-3:]
            return None, f"npm install sharp@{SHARP_VERSION} failed: " + " | ".join(err)
        return [node, str(SHARP_DIR / "thumbnails.mjs")], f"sharp {SHARP_VERSION} (installed now)"
    return [node, str(SHARP_DIR / "thumbnails.mjs")], f"sharp {SHARP_VERSION} (already installed)"


# --- the parent: runs every contender, checks and aggregates -----------------------------------


def run_contender(
    contender: str,
    files: list[Path],
    *,
    seconds: float,
    cpu: int,
    out_dir: Path | None,
    sharp_cmd: list[str] | None,
    work: Path,
) -> dict[str, Any]:
    """One child process, pinned to `cpu`, running one contender on `files`."""
    job = {
        "contender": contender,
        "files": [str(f) for f in files],
        "seconds": seconds,
        "cpu": cpu,
        "out_dir": str(out_dir) if out_dir else None,
        "mode": {"sharp_one_decode": "one-decode", "sharp_watermark": "watermark"}.get(
            contender, "two-pipelines"
        ),
    }
    if contender == "sharp_watermark":
        job.update(watermark_job(files, work))
    job_path = work / f"job-{contender}.json"
    job_path.write_text(json.dumps(job))
    if contender.startswith("sharp"):
        assert sharp_cmd is not None
        cmd = [*sharp_cmd, str(job_path)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(job_path)]
    taskset = shutil.which("taskset")
    if taskset:
        cmd = [taskset, "-c", str(cpu), *cmd]
    env = {
        **os.environ,
        "VIPS_CONCURRENCY": "1",
        "UV_THREADPOOL_SIZE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    timeout = 120 + seconds * 4
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()][-4:]
        raise RuntimeError(f"{contender} exited with {proc.returncode}: " + " | ".join(err))
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def check_outputs(
    contender: str, files: list[Path], result: dict[str, Any], out_dir: Path
) -> list[str]:
    """What is wrong with a contender's warm-up outputs (empty: all fine)."""
    import pyvips

    problems = []
    for o in result["outputs"]:
        up_w, up_h = upright_size(files[o["index"]])
        tag = o["file"].rsplit("-", 1)[1].removesuffix(".jpg")
        path = out_dir / o["file"]
        data = path.read_bytes()
        img = pyvips.Image.new_from_file(str(path))
        where = f"{files[o['index']].name} → {o['file']}"
        got = (img.width, img.height)
        if tag == "wm":
            # The long edge at most the cap; within PREVIEW_UNDERSHOOT of it (round 1: exactly
            # the cap) when the photo is larger; the aspect ratio kept.
            cap = min(WATERMARK_MAX_EDGE, max(up_w, up_h))
            floor = cap if contender.endswith("_r1") else cap * (1 - 0.1)
            ratio_ok = abs(got[0] * up_h - got[1] * up_w) <= max(up_w, up_h)
            if not (floor - 1 <= max(got) <= cap and ratio_ok):
                problems.append(f"{where}: {got[0]}×{got[1]} from {up_w}×{up_h}")
        else:
            scale = min(1.0, int(tag) / up_w)
            want = (round(up_w * scale), round(up_h * scale))
            if abs(got[0] - want[0]) > 1 or abs(got[1] - want[1]) > 1:
                problems.append(f"{where}: {got[0]}×{got[1]}, expected {want[0]}×{want[1]}")
        if (o["width"], o["height"]) != got:
            problems.append(f"{where}: reported {o['width']}×{o['height']}, file is {got}")
        markers = jpeg_markers(data)
        if img.get("vips-loader") != "jpegload":
            problems.append(f"{where}: not a JPEG")
        elif tag != "wm" and 0xC2 not in markers:
            problems.append(f"{where}: not progressive")
        elif tag == "wm" and not contender.endswith("_r1") and 0xC2 in markers:
            problems.append(f"{where}: progressive (the preview is baseline)")
        if img.bands != 3 or img.interpretation != "srgb":
            problems.append(f"{where}: {img.bands} bands, {img.interpretation}")
        kept = sorted({METADATA_MARKERS[m] for m in markers if m in METADATA_MARKERS})
        if kept:
            problems.append(f"{where}: metadata left: {', '.join(kept)}")
    return problems


# Segments that carry metadata: APP1 (EXIF, XMP), APP2 (ICC), APP13 (IPTC), COM (comment).
# Read from the bytes, as libvips does not report every one of them (a COM, for instance).
METADATA_MARKERS = {0xE1: "APP1 EXIF/XMP", 0xE2: "APP2 ICC", 0xED: "APP13 IPTC", 0xFE: "COM"}


def jpeg_markers(jpeg: bytes) -> list[int]:
    """The markers of a JPEG's segments before its first scan (SOF2 = 0xC2 is progressive)."""
    markers = []
    i = 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    return markers


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median round by photos per CPU-second, with the spread of every round."""
    for r in rounds:
        r["per_cpu_second"] = r["photos"] / r["cpu_seconds"] if r["cpu_seconds"] else 0.0
        r["per_second"] = r["photos"] / r["seconds"]
    ordered = sorted(rounds, key=lambda r: r["per_cpu_second"])
    med = ordered[(len(ordered) - 1) // 2]
    sizes = [o["bytes"] for o in med["outputs"]]
    return {
        "photos_per_cpu_second": round(med["per_cpu_second"], 2),
        "photos_per_second": round(med["per_second"], 2),
        "core_share": round(med["cpu_seconds"] / med["seconds"], 3),
        "cpu_ms_per_photo": round(1000 * med["cpu_seconds"] / med["photos"], 1),
        "rounds_photos_per_cpu_second": [round(r["per_cpu_second"], 2) for r in rounds],
        "rounds_photos_per_second": [round(r["per_second"], 2) for r in rounds],
        "photos_timed": [r["photos"] for r in rounds],
        "peak_rss": max(r["max_rss"] for r in rounds),
        "baseline_rss": min(r["baseline_rss"] for r in rounds),
        "output_bytes_mean": round(statistics.fmean(sizes)) if sizes else 0,
        "versions": med["versions"],
    }


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per class: the thumbnails against their peers, and (`watermark/PEER`) the preview
    against its own; goals only at 12 MP for the watermark, as issue 13 sets them."""
    out: dict[str, dict[str, Any]] = {}
    for cls, row in results.items():
        out[cls] = {}
        plans = [
            ("mediaplane", "", GOALS, INFO_PEERS),
            (
                "mediaplane_watermark",
                "watermark/",
                WATERMARK_GOALS if cls == "12mp" else {},
                (*WATERMARK_INFO_PEERS, *(WATERMARK_GOALS if cls != "12mp" else ())),
            ),
        ]
        for ours, prefix, goals, info in plans:
            mp = row.get(ours, {}).get("photos_per_cpu_second")
            for peer, goal in [*goals.items(), *((p, None) for p in info)]:
                other = row.get(peer, {}).get("photos_per_cpu_second")
                if mp and other:
                    ratio = mp / other
                    out[cls][prefix + peer] = {"ratio": round(ratio, 3), "goal": goal}
                    if goal is not None:
                        out[cls][prefix + peer]["met"] = ratio >= goal
    return out


def main_bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    cpus = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else cpus[0]
    # This process only waits; keep it off the measured core when there is another one.
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus) - {cpu})
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    n_rounds = args.rounds or (1 if args.quick else 3)

    classes = input_classes()
    sharp_cmd, sharp_note = (None, "--no-sharp") if args.no_sharp else ensure_sharp()
    if not sharp_cmd:
        sharp_note = f"SKIPPED, {sharp_note}"
    log(f"sharp: {sharp_note}")
    contenders = [c for c in CONTENDERS if not c.startswith("sharp") or sharp_cmd]

    import pyvips
    from PIL import __version__ as pillow_version

    report: dict[str, Any] = {
        "benchmark": "derivatives",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "measured_cpu": cpu,
            "python": platform.python_version(),
            "libvips_pyvips": ".".join(str(pyvips.version(i)) for i in range(3)),
            "pillow": pillow_version,
            "loadavg_at_start": os.getloadavg(),
        },
        "plan": {"quick": args.quick, "rounds": n_rounds, "seconds_per_pass": seconds},
        "work": {
            "widths": list(WIDTHS),
            "quality": QUALITY,
            "watermark": {"text": WATERMARK_TEXT, "max_edge": WATERMARK_MAX_EDGE, "quality": 85},
        },
        "inputs": {
            cls: {
                "files": [
                    str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f) for f in files
                ],
                "megapixels": [round(w * h / 1e6, 2) for w, h in map(upright_size, files)],
                "bytes": [f.stat().st_size for f in files],
            }
            for cls, files in classes.items()
        },
        "sharp": sharp_note,
    }

    work = Path(tempfile.mkdtemp(prefix="mediaplane-bench-derivatives-"))
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        cls: {c: [] for c in contenders} for cls in CLASSES
    }
    problems: dict[str, list[str]] = {}
    failures: dict[str, str] = {}
    try:
        for rnd in range(n_rounds):
            for cls in CLASSES:
                k = (rnd + CLASSES.index(cls)) % len(contenders)
                for contender in contenders[k:] + contenders[:k]:  # rotate the order
                    key = f"{cls}/{contender}"
                    if key in failures:
                        continue
                    out_dir = None
                    if rnd == 0:
                        out_dir = work / "out" / cls / contender
                        out_dir.mkdir(parents=True)
                    log(f"round {rnd + 1}/{n_rounds}: {CLASS_LABELS[cls]:<11} {contender}")
                    try:
                        result = run_contender(
                            contender,
                            classes[cls],
                            seconds=seconds,
                            cpu=cpu,
                            out_dir=out_dir,
                            sharp_cmd=sharp_cmd,
                            work=work,
                        )
                    except (RuntimeError, subprocess.SubprocessError, ValueError) as exc:
                        failures[key] = str(exc)
                        log(f"FAILED {key}: {exc}")
                        continue
                    if out_dir:
                        found = check_outputs(contender, classes[cls], result, out_dir)
                        if found:
                            problems[key] = found
                    raw[cls][contender].append(result)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    results = {
        cls: {c: summarize_rounds(rows) for c, rows in per.items() if rows}
        for cls, per in raw.items()
    }
    report["results"] = results
    report["ratios"] = ratios(results)
    report["output_problems"] = problems
    report["failures"] = failures
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    return report


# --- output -------------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    plan = report["plan"]
    lines = [
        f"Derivatives: 400 + 800 px JPEG Q{QUALITY} (progressive, upright, sRGB, stripped); "
        f"each contender alone on CPU {report['machine']['measured_cpu']}, median of "
        f"{plan['rounds']} round(s) of {plan['seconds_per_pass']:g} s"
        + (" (--quick)" if plan["quick"] else ""),
        "",
    ]
    head = (
        f"{'input':<18} {'contender':<21} {'photos/CPU-s':>12} {'photos/s':>9} {'core':>5} "
        f"{'CPU ms':>7} {'peak RSS':>9} {'Δ RSS':>7} {'out KB':>7}   rounds (photos/CPU-s)"
    )
    lines += [head, "-" * len(head)]
    for cls in CLASSES:
        inp = report["inputs"][cls]
        mps = inp["megapixels"]
        span = f"{min(mps):.1f}–{max(mps):.1f} MP" if len(mps) > 1 else f"{mps[0]:.0f} MP"
        label = f"{CLASS_LABELS[cls]} ×{len(mps)}" if len(mps) > 1 else span
        names = [label, span if len(mps) > 1 else ""]
        for contender in CONTENDERS:
            r = report["results"].get(cls, {}).get(contender)
            if r is None:
                continue
            name = names.pop(0) if names else ""
            rounds = " ".join(f"{v:.1f}" for v in r["rounds_photos_per_cpu_second"])
            lines.append(
                f"{name:<18} "
                f"{LABELS[contender]:<21} {r['photos_per_cpu_second']:>12.1f} "
                f"{r['photos_per_second']:>9.1f} {r['core_share'] * 100:>4.0f}% "
                f"{r['cpu_ms_per_photo']:>7.1f} {r['peak_rss'] / 2**20:>5.0f} MiB "
                f"{(r['peak_rss'] - r['baseline_rss']) / 2**20:>7.0f} "
                f"{r['output_bytes_mean'] / 1000:>7.0f}   {rounds}"
            )
        lines.append("")
    lines += [
        "photos/CPU-s: photos (both sizes, or one watermark) per second of the contender's CPU "
        "time, i.e. per core; photos/s: wall rate on the pinned core; core: CPU time / wall time "
        "(under ~95%, something else ran on that core); CPU ms: per photo; peak RSS: ru_maxrss "
        "of the contender's process; Δ RSS: peak minus its RSS after start-up with the photos in "
        "memory; out KB: mean size of one output.",
        "",
        f"{'thumbnails':<18} {'Mediaplane/Sharp one decode':>28} {'goal':>6} {'':>5} "
        f"{'Mediaplane/Pillow':>18} {'goal':>6} {'':>5}  "
        f"{'Mediaplane/Sharp two pipelines (no goal)':>41}",
    ]
    for cls in CLASSES:
        row = report["ratios"].get(cls, {})
        cells = []
        for peer, width in (("sharp_one_decode", 28), ("pillow", 18)):
            r = row.get(peer)
            if r is None:
                cells.append(f"{'n/a':>{width}} {'≥' + format(GOALS[peer], 'g'):>6} {'':>5}")
            else:
                verdict = "PASS" if r["met"] else "MISS"
                cells.append(
                    f"{r['ratio']:>{width - 1}.2f}× {'≥' + format(r['goal'], 'g'):>6} {verdict:>5}"
                )
        info = row.get("sharp")
        cells.append(f" {info['ratio']:>40.2f}×" if info else f" {'n/a':>41}")
        lines.append(f"{CLASS_LABELS[cls]:<18} " + " ".join(cells))
    lines += [
        "",
        f"{'watermark':<18} {'Mediaplane/round 1':>28} {'goal':>6} {'':>5} "
        f"{'Mediaplane/Sharp composite':>27}",
    ]
    for cls in CLASSES:
        row = report["ratios"].get(cls, {})
        r1 = row.get("watermark/mediaplane_watermark_r1")
        sh = row.get("watermark/sharp_watermark")
        goal = WATERMARK_GOALS["mediaplane_watermark_r1"] if cls == "12mp" else None
        verdict = ("PASS" if r1.get("met") else "MISS") if r1 and goal else ""
        lines.append(
            f"{CLASS_LABELS[cls]:<18} "
            + (f"{r1['ratio']:>27.2f}×" if r1 else f"{'n/a':>28}")
            + f" {('≥' + format(goal, 'g')) if goal else '':>6} {verdict:>5} "
            + (f"{sh['ratio']:>26.2f}×" if sh else f"{'n/a':>27}")
        )
    m = report["machine"]
    lines += [
        "",
        f"Sharp: {report['sharp']}. libvips (pyvips) {m['libvips_pyvips']}, Pillow "
        f"{m['pillow']}, Python {m['python']}. Load average at start "
        f"{m['loadavg_at_start'][0]:.2f}, at end {m['loadavg_at_end'][0]:.2f}. "
        f"Whole run {report['elapsed_seconds']} s.",
    ]
    for key, found in report["output_problems"].items():
        lines.append(f"OUTPUT PROBLEMS {key} ({len(found)}): " + "; ".join(found[:3]))
    for key, err in report["failures"].items():
        lines.append(f"FAILED {key}: {err}")
    lines += ["", summary_line(report)]
    return "\n".join(lines)


def summary_line(report: dict[str, Any]) -> str:
    parts = []
    for cls in CLASSES:
        row = report["results"].get(cls, {})
        rates = "/".join(
            f"{row[c]['photos_per_cpu_second']:.1f}" if c in row else "-"
            for c in ("mediaplane", "sharp_one_decode", "pillow")
        )
        verdicts = []
        for peer in (
            *GOALS,
            *((f"watermark/{p}" for p in WATERMARK_GOALS) if cls == "12mp" else ()),
        ):
            r = report["ratios"].get(cls, {}).get(peer)
            if r:
                verdicts.append(f"{r['ratio']:.2f}× {'PASS' if r['met'] else 'MISS'}")
            else:
                verdicts.append("n/a")
        wm = f", watermark vs round 1 {verdicts[2]}" if len(verdicts) > 2 else ""
        parts.append(
            f"{CLASS_LABELS[cls]} {rates} (vs Sharp one decode {verdicts[0]}, "
            f"vs Pillow {verdicts[1]}{wm})"
        )
    all_ratios = [r for row in report["ratios"].values() for r in row.values() if "met" in r]
    expected = len(CLASSES) * len(GOALS) + len(WATERMARK_GOALS)
    if len(all_ratios) < expected:
        overall = "INCOMPLETE"
    else:
        overall = "ALL GOALS MET" if all(r["met"] for r in all_ratios) else "GOALS MISSED"
    bad = " OUTPUT PROBLEMS" if report["output_problems"] else ""
    return (
        "SUMMARY derivatives: photos per CPU-second Mediaplane/Sharp one decode/Pillow: "
        + "; ".join(parts)
        + f" → {overall}{bad}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s passes (~30 s)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 3, quick 1)")
    parser.add_argument(
        "--seconds", type=float, default=0, help="timed seconds per pass (default 3, quick 1)"
    )
    parser.add_argument("--cpu", type=int, default=None, help="the core to pin contenders to")
    parser.add_argument("--no-sharp", action="store_true", help="skip Sharp (no Node needed)")
    parser.add_argument("--keep", action="store_true", help="keep the outputs (work dir)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args.child)

    report = main_bench(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"results written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
