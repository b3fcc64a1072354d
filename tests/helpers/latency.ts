/** Timed writes and percentiles, for tests that measure write latency under an attack. */
import { nodeExporterSeries, writeRequestBody } from "./payload.ts";

/**
 * Sends write `i` (20 node_exporter-like series, stamped a second apart per
 * `i`) to `url`; returns its status and how long it took (ms).
 */
export async function timedWrite(
  url: string,
  i: number,
  headers: Record<string, string> = {},
): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${url}/write`, {
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf",
      ...headers,
    },
    body: writeRequestBody(nodeExporterSeries(20, 1_700_000_000_000 + i * 1000)) as Uint8Array<
      ArrayBuffer
    >,
    signal: AbortSignal.timeout(30_000),
  });
  await res.body?.cancel();
  return { status: res.status, ms: performance.now() - started };
}

/** The `p` quantile (0..1) of `xs`, nearest rank. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}
