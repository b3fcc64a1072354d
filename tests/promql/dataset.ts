/**
 * A deterministic data set for the PromQL tests: counters with a reset and
 * a gap, gauges (one ended by a staleness marker, one scraped every 30 s),
 * a classic histogram, NaN and ±Inf values. 60 minutes at 15 s from T0.
 */
import { type PayloadSeries, STALE_NAN_BITS } from "../helpers/payload.ts";

/** Start of the data (ms), a whole minute. */
export const T0 = 1_700_000_100_000;
export const STEP = 15_000;
export const POINTS = 241;

function counter(
  labels: Record<string, string>,
  opts: { resetAt?: number; gap?: [number, number]; seed: number },
): PayloadSeries {
  const samples = [];
  let v = opts.seed * 10;
  for (let i = 0; i < POINTS; i++) {
    v += ((i * 7 + opts.seed) % 5) + 0.25;
    if (i === opts.resetAt) v = 1.5;
    if (opts.gap && i >= opts.gap[0] && i < opts.gap[1]) continue;
    samples.push({ value: v, timestamp: T0 + i * STEP });
  }
  return { labels, samples };
}

/** The series of the data set. */
export function dataset(): PayloadSeries[] {
  const out: PayloadSeries[] = [];
  const req = (instance: string, method: string) => ({
    __name__: "dt_requests_total",
    job: "api",
    instance,
    method,
  });
  out.push(counter(req("a", "get"), { seed: 1 }));
  out.push(counter(req("a", "post"), { seed: 2 }));
  out.push(counter(req("b", "get"), { seed: 3, resetAt: 100 }));
  out.push(counter(req("c", "post"), { seed: 4, gap: [80, 110] }));

  // Gauges: a and c full (c every 30 s from i=40), b stale from i=120.
  for (const [instance, location] of [["a", "x"], ["b", "y"], ["c", "x"]]) {
    const samples = [];
    for (let i = 0; i < POINTS; i++) {
      if (instance === "c" && (i < 40 || i % 2 === 1)) continue;
      const k = instance.charCodeAt(0) - 96;
      const v = Math.round((20 + 3 * k * Math.sin(i / (9 + k))) * 1000) / 1000;
      if (instance === "b" && i === 120) {
        samples.push({ value: 0, valueBits: STALE_NAN_BITS, timestamp: T0 + i * STEP });
        break;
      }
      samples.push({ value: v, timestamp: T0 + i * STEP });
    }
    out.push({
      labels: { __name__: "dt_temperature", job: "node", instance, location },
      samples,
    });
  }

  // up: 1 mostly, 0 for a while on b.
  for (const instance of ["a", "b", "c"]) {
    const samples = [];
    for (let i = 0; i < POINTS; i++) {
      const down = instance === "b" && i >= 60 && i < 75;
      samples.push({ value: down ? 0 : 1, timestamp: T0 + i * STEP });
    }
    out.push({ labels: { __name__: "dt_up", job: "api", instance }, samples });
  }

  // A classic histogram per instance.
  const bounds = ["0.1", "0.5", "1", "5", "+Inf"];
  for (const instance of ["a", "b"]) {
    const counts = [0, 0, 0, 0, 0];
    let sum = 0;
    const series = bounds.map((le) => ({
      labels: { __name__: "dt_latency_seconds_bucket", job: "api", instance, le },
      samples: [] as { value: number; timestamp: number }[],
    }));
    const sumSeries: PayloadSeries = {
      labels: { __name__: "dt_latency_seconds_sum", job: "api", instance },
      samples: [],
    };
    const countSeries: PayloadSeries = {
      labels: { __name__: "dt_latency_seconds_count", job: "api", instance },
      samples: [],
    };
    for (let i = 0; i < POINTS; i++) {
      const k = instance === "a" ? 1 : 2;
      const inc = [(i * k) % 3, (i + k) % 4, 1, i % 4 === 0 ? 1 : 0, k];
      let acc = 0;
      for (let b = 0; b < 5; b++) {
        acc += inc[b];
        counts[b] += acc;
      }
      sum += acc * 0.37 + k;
      const ts = T0 + i * STEP;
      series.forEach((s, b) => s.samples.push({ value: counts[b], timestamp: ts }));
      sumSeries.samples.push({ value: Math.round(sum * 1000) / 1000, timestamp: ts });
      countSeries.samples.push({ value: counts[4], timestamp: ts });
    }
    out.push(...series, sumSeries, countSeries);
  }

  // NaN and infinities.
  const weird = [];
  for (let i = 0; i < POINTS; i++) {
    const v = i % 10 === 3 ? NaN : i % 10 === 7 ? Infinity : i % 10 === 8 ? -Infinity : i / 4;
    weird.push({ value: v, timestamp: T0 + i * STEP });
  }
  out.push({ labels: { __name__: "dt_nan", kind: "mixed" }, samples: weird });
  out.push({
    labels: { __name__: "dt_nan", kind: "plain" },
    samples: weird.map((s, i) => ({ value: i * 0.1, timestamp: s.timestamp })),
  });
  return out;
}
