/**
 * Decode micro-benchmark, run as its own process so its heap is its own:
 *
 *   deno run -A bench/decode.ts --plan plan.bin [--seconds 3]
 *
 * Decodes every timed body of the plan (snappy + protobuf → validated
 * series and samples, no database) in a loop for `--seconds`, and prints
 * one JSON line: samples/s on one thread (JavaScript runs decoding on one
 * core), the same per CPU second of the process, and the split between
 * snappy and protobuf.
 *
 * @module
 */
import { decodeWriteRequest, parseWriteRequest } from "../src/remote_write/decode.ts";
import { uncompressSnappyBlock } from "../src/wire/snappy.ts";
import { loadPlan } from "./payloads.ts";
import { cpuSeconds } from "./proc.ts";

/** What the decode benchmark measured. */
export interface DecodeResult {
  samples: number;
  seconds: number;
  samplesPerSecond: number;
  samplesPerCpuSecond: number;
  snappySamplesPerSecond: number;
  protobufSamplesPerSecond: number;
  bytesPerSample: { compressed: number; raw: number };
}

function arg(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

const LIMITS = { maxDecodedBytes: 64 << 20 };

/** Runs `fn` over all bodies until `seconds` pass; returns samples/s and CPU s. */
function loop(
  bodies: Uint8Array[],
  samplesOf: number[],
  seconds: number,
  fn: (b: Uint8Array) => void,
): { samples: number; wall: number; cpu: number } {
  const cpu0 = cpuSeconds("self");
  const t0 = performance.now();
  let samples = 0;
  while (performance.now() - t0 < seconds * 1000) {
    for (let i = 0; i < bodies.length; i++) {
      fn(bodies[i]);
      samples += samplesOf[i];
    }
  }
  return {
    samples,
    wall: (performance.now() - t0) / 1000,
    cpu: cpuSeconds("self") - cpu0,
  };
}

async function main(): Promise<void> {
  const planPath = arg("plan");
  if (!planPath) throw new Error("Usage: decode.ts --plan <file> [--seconds 3]");
  const seconds = Number(arg("seconds") ?? 3);
  const plan = await loadPlan(planPath);
  const reqs = plan.timed.flat();
  const bodies = reqs.map((r) => r.body);
  const samplesOf = reqs.map((r) => r.samples);
  const raws = bodies.map((b) => uncompressSnappyBlock(b, LIMITS.maxDecodedBytes));
  // Check once that decoding sees every sample, then warm up the JIT.
  let seen = 0;
  for (const b of bodies) seen += decodeWriteRequest(b, LIMITS).samples;
  const expected = samplesOf.reduce((a, b) => a + b, 0);
  if (seen !== expected) throw new Error(`Decoded ${seen} samples, the plan holds ${expected}`);
  loop(bodies, samplesOf, Math.min(1, seconds / 3), (b) => decodeWriteRequest(b, LIMITS));

  const full = loop(bodies, samplesOf, seconds, (b) => decodeWriteRequest(b, LIMITS));
  const snappyOnly = loop(
    bodies,
    samplesOf,
    seconds / 3,
    (b) => uncompressSnappyBlock(b, LIMITS.maxDecodedBytes),
  );
  const protoOnly = loop(raws, samplesOf, seconds / 3, (r) => parseWriteRequest(r, LIMITS));
  const compressed = bodies.reduce((s, b) => s + b.length, 0);
  const raw = raws.reduce((s, b) => s + b.length, 0);
  const result: DecodeResult = {
    samples: full.samples,
    seconds: full.wall,
    samplesPerSecond: full.samples / full.wall,
    samplesPerCpuSecond: full.samples / full.cpu,
    snappySamplesPerSecond: snappyOnly.samples / snappyOnly.wall,
    protobufSamplesPerSecond: protoOnly.samples / protoOnly.wall,
    bytesPerSample: { compressed: compressed / expected, raw: raw / expected },
  };
  console.log(JSON.stringify(result));
}

if (import.meta.main) await main();
