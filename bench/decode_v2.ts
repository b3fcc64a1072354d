/**
 * Remote write 2.0 against 1.0 decode speed, on the same samples:
 *
 *   deno run -A bench/decode_v2.ts [--series 2000] [--requests 50] [--seconds 3]
 *
 * Builds `--requests` requests of `--series` node_exporter-like series
 * (bench/payloads.ts `benchLabels`, 9 labels) with one sample each (what
 * Prometheus's queue manager sends), once as `prometheus.WriteRequest` and
 * once as `io.prometheus.write.v2.Request` (symbol table per request),
 * snappy-compressed, then decodes each set in a loop for `--seconds`
 * (snappy + protobuf → validated series, no database) and prints one JSON
 * line per version and the ratio.
 *
 * @module
 */
import { snappy } from "../deps.ts";
import { WriteRequestV2 } from "../proto/data_model_protos.ts";
import { WriteRequest } from "../proto/messages.ts";
import { decodeWriteRequest } from "../src/remote_write/decode.ts";
import { uncompressSnappyBlock } from "../src/wire/snappy.ts";
import { decodeWriteRequestV2, parseWriteRequestV2 } from "../src/remote_write/decode_v2.ts";
import { parseWriteRequest } from "../src/remote_write/decode.ts";
import { benchLabels, benchValue } from "./payloads.ts";

function arg(name: string, dflt: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
}

const LIMITS = { maxDecodedBytes: 64 << 20 };
const T0 = 1_700_000_000_000;

/** The 1.0 and 2.0 bodies of request `r`. */
function build(r: number, seriesPerRequest: number): [Uint8Array, Uint8Array] {
  const series = [];
  for (let k = 0; k < seriesPerRequest; k++) {
    const i = r * seriesPerRequest + k;
    series.push({ labels: benchLabels(i), value: benchValue(i, r), timestamp: T0 + r * 15_000 });
  }
  const v1 = WriteRequest.encode(WriteRequest.fromObject({
    timeseries: series.map((s) => ({
      labels: s.labels,
      samples: [{ value: s.value, timestamp: s.timestamp }],
    })),
  })).finish();
  const symbols = [""];
  const index = new Map<string, number>([["", 0]]);
  const ref = (x: string) => {
    let i = index.get(x);
    if (i === undefined) index.set(x, i = symbols.push(x) - 1);
    return i;
  };
  const timeseries = series.map((s) => ({
    labels_refs: s.labels.flatMap((l) => [ref(l.name), ref(l.value)]),
    samples: [{ value: s.value, timestamp: s.timestamp }],
  }));
  const v2 = WriteRequestV2.encode(WriteRequestV2.fromObject({ symbols, timeseries })).finish();
  return [snappy.compress(v1), snappy.compress(v2)];
}

function loop(bodies: Uint8Array[], seconds: number, fn: (b: Uint8Array) => number): number {
  const t0 = performance.now();
  let samples = 0;
  while (performance.now() - t0 < seconds * 1000) {
    for (const b of bodies) samples += fn(b);
  }
  return samples / ((performance.now() - t0) / 1000);
}

/** What one version measured. */
export interface VersionResult {
  version: string;
  samplesPerSecond: number;
  protobufSamplesPerSecond: number;
  compressedBytesPerSample: number;
  rawBytesPerSample: number;
}

function main(): void {
  const seriesPerRequest = arg("series", 2000);
  const requests = arg("requests", 50);
  const seconds = arg("seconds", 3);
  const v1: Uint8Array[] = [];
  const v2: Uint8Array[] = [];
  for (let r = 0; r < requests; r++) {
    const [a, b] = build(r, seriesPerRequest);
    v1.push(a);
    v2.push(b);
  }
  const raw1 = v1.map((b) => uncompressSnappyBlock(b, LIMITS.maxDecodedBytes));
  const raw2 = v2.map((b) => uncompressSnappyBlock(b, LIMITS.maxDecodedBytes));
  // Same samples both ways: checked once, then both warmed up.
  for (let r = 0; r < requests; r++) {
    const a = decodeWriteRequest(v1[r], LIMITS);
    const b = decodeWriteRequestV2(v2[r], LIMITS);
    if (
      a.samples !== b.samples ||
      JSON.stringify(a.series.map((s) => [s.labels, s.timestamps, [...s.values]])) !==
        JSON.stringify(b.series.map((s) => [s.labels, s.timestamps, [...s.values]]))
    ) throw new Error(`Request ${r} decodes differently in 1.0 and 2.0`);
  }
  const total = requests * seriesPerRequest;
  const versions = [
    { version: "1.0", bodies: v1, raws: raw1, full: decodeWriteRequest, proto: parseWriteRequest },
    {
      version: "2.0",
      bodies: v2,
      raws: raw2,
      full: decodeWriteRequestV2,
      proto: parseWriteRequestV2,
    },
  ] as const;
  // Rounds alternate the versions and the best round counts: the machine
  // is shared, and a single long run favours whichever ran in a quiet spell.
  const best = versions.map(() => ({ full: 0, proto: 0 }));
  const rounds = 3;
  for (let round = 0; round < rounds; round++) {
    versions.forEach((v, i) => {
      const full = loop(v.bodies, seconds / rounds, (b) => v.full(b, LIMITS).samples);
      const proto = loop(v.raws, seconds / rounds / 2, (b) => v.proto(b, LIMITS).samples);
      best[i].full = Math.max(best[i].full, full);
      best[i].proto = Math.max(best[i].proto, proto);
    });
  }
  const results: VersionResult[] = versions.map((v, i) => ({
    version: v.version,
    samplesPerSecond: best[i].full,
    protobufSamplesPerSecond: best[i].proto,
    compressedBytesPerSample: v.bodies.reduce((s, b) => s + b.length, 0) / total,
    rawBytesPerSample: v.raws.reduce((s, b) => s + b.length, 0) / total,
  }));
  for (const r of results) console.log(JSON.stringify(r));
  console.log(JSON.stringify({
    v2OverV1: results[1].samplesPerSecond / results[0].samplesPerSecond,
    v2OverV1Protobuf: results[1].protobufSamplesPerSecond / results[0].protobufSamplesPerSecond,
  }));
}

if (import.meta.main) main();
