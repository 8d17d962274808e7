// Sharp doing Mediaplane's `make_thumbnails` work, timed: run by bench/derivatives.py.
//
//   UV_THREADPOOL_SIZE=1 taskset -c 0 node thumbnails.mjs JOB.json   → one JSON line on stdout
//
// JOB.json: {"files": [...], "seconds": 3.0, "out_dir": "DIR" | null, "mode": MODE}. Every
// file is read into memory first (as the Python contenders get bytes). One warm-up pass (its
// outputs are written to out_dir, for the bench to check), then whole passes over the files
// until `seconds` have passed. MODE:
//   "two-pipelines" (default): per photo, one pipeline per width, the idiomatic Sharp call; the
//       input is decoded twice, each time with shrink-on-load for its own width.
//   "one-decode": decode once to 800 px (raw pixels), then encode that and a 400 px resize of
//       it: what Mediaplane does, written by hand in Sharp.
//   "watermark": Mediaplane's `make_watermarked` work: per photo, resize to the box the job
//       gives for it (`boxes[i]`, Mediaplane's output size), composite the job's tiled overlay
//       (`overlays[i]`: the text block as raw grey+alpha, tiled), baseline JPEG Q85. The
//       overlay is loaded once per file, as Mediaplane renders it once per text and size.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";

// One libvips worker thread (UV_THREADPOOL_SIZE=1 is set by the caller: one pipeline at a time).
sharp.concurrency(1);
// A service never sees the same bytes twice; the bench repeats them, and libvips' operation
// cache would then serve repeated loads of the same Buffer from memory.
sharp.cache(false);

const WIDTHS = [800, 400];
const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const inputs = job.files.map((f) => readFileSync(f));
const derivatives = { "one-decode": oneDecode, watermark: watermarked }[job.mode] ?? twoPipelines;
const overlays = (job.overlays ?? []).map((o) => ({
  input: readFileSync(o.file),
  raw: { width: o.width, height: o.height, channels: 4 },
  tile: true,
}));

const JPEG = { quality: 82, progressive: true, mozjpeg: false };

async function twoPipelines(input) {
  const out = [];
  for (const width of WIDTHS) {
    out.push(
      await sharp(input)
        .rotate() // EXIF orientation; the tag is dropped with the rest of the metadata
        .resize({ width, withoutEnlargement: true })
        .toColourspace("srgb")
        .jpeg(JPEG)
        .toBuffer({ resolveWithObject: true }),
    );
  }
  return out;
}

async function oneDecode(input) {
  const { data, info } = await sharp(input)
    .rotate()
    .resize({ width: WIDTHS[0], withoutEnlargement: true })
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  return [
    await sharp(data, raw).jpeg(JPEG).toBuffer({ resolveWithObject: true }),
    await sharp(data, raw)
      .resize({ width: WIDTHS[1], withoutEnlargement: true })
      .jpeg(JPEG)
      .toBuffer({ resolveWithObject: true }),
  ];
}

const WATERMARK_JPEG = { quality: 85, progressive: false, optimiseCoding: false, mozjpeg: false };

async function watermarked(input, i) {
  const [width, height] = job.boxes[i];
  return [
    await sharp(input)
      .rotate()
      .resize({ width, height, fit: "inside", withoutEnlargement: true })
      .toColourspace("srgb")
      .composite([overlays[i]])
      .jpeg(WATERMARK_JPEG)
      .toBuffer({ resolveWithObject: true }),
  ];
}

const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const baselineRss = process.memoryUsage().rss;
const outputs = [];
for (const [i, input] of inputs.entries()) {
  for (const { data, info } of await derivatives(input, i)) {
    const tag = job.mode === "watermark" ? "wm" : WIDTHS[outputs.length % 2];
    const name = `${i}-${tag}.jpg`;
    if (job.out_dir) writeFileSync(join(job.out_dir, name), data);
    outputs.push({ index: i, file: name, width: info.width, height: info.height, bytes: data.length });
  }
}

let photos = 0;
let passes = 0;
const cpu0 = cpuSeconds();
const t0 = process.hrtime.bigint();
let elapsed = 0;
while (passes === 0 || elapsed < job.seconds) {
  for (const [i, input] of inputs.entries()) await derivatives(input, i);
  photos += inputs.length;
  passes += 1;
  elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
}
const cpu = cpuSeconds() - cpu0;

process.stdout.write(
  JSON.stringify({
    photos,
    passes,
    seconds: elapsed,
    cpu_seconds: cpu,
    baseline_rss: baselineRss,
    max_rss: process.resourceUsage().maxRSS * 1024,
    outputs,
    versions: { node: process.versions.node, sharp: sharp.versions.sharp, libvips: sharp.versions.vips },
  }) + "\n",
);
