/**
 * Scripted Prometheus replicas for HA tests: each replica scrapes targets
 * on its own schedule (interval, and a phase per replica and target, as
 * Prometheus seeds them), queues the samples and sends them in order,
 * retrying on 5xx like Prometheus's remote-write queue (one queue per
 * shard; a series always goes through the same shard). Scripted events
 * change a replica's behaviour over time (paused, restarted losing its
 * unsent tail, one shard lagging). What got a 2xx is recorded per series,
 * so a test can judge what is stored against what was acknowledged.
 */
import { writeRequestBody } from "../helpers/payload.ts";

/** A scrape target: one series `up{job, instance}` (plus `cluster`, `__replica__`). */
export interface Target {
  job: string;
  instance: string;
  intervalMs: number;
  /** Phase (ms into the interval) per replica name. */
  phase: Record<string, number>;
  /** Added to every timestamp (a target exposing its own timestamps, honor_timestamps). */
  skewMs?: number;
}

/** What a replica does at a moment (ms since the run started). */
export interface Behaviour {
  /** Neither scrapes nor sends (a stopped or paused process). */
  down?: (elapsed: number) => boolean;
  /** True at the moment the process restarts: its unsent samples are lost. */
  restartAt?: number;
  /**
   * When it comes back up, scrapes every target at once, off its phase (as
   * Prometheus does after SIGCONT), then goes on with its schedule.
   */
  catchUp?: boolean;
  /** Holds back the shard of this target until the given elapsed time. */
  lagInstance?: { instance: string; untilMs: number };
}

/** Per series key (job/instance): acknowledged sample times. */
export type Acks = Map<string, number[]>;

/** Series key of a target. */
export const keyOf = (job: string, instance: string) => `${job}/${instance}`;

interface Queued {
  key: string;
  t: number;
  value: number;
}

/** Runs the replicas for `durationMs`, sending to `urls` (a random one per request). */
export async function runReplicas(o: {
  urls: string[];
  cluster: string;
  replicas: string[];
  targets: Target[];
  durationMs: number;
  /** Sample time at elapsed 0 (ms). */
  t0: number;
  behaviour?: Record<string, Behaviour>;
  /** Milliseconds between sends. */
  tickMs?: number;
}): Promise<{ acks: Acks; statuses: Map<number, number> }> {
  const acks: Acks = new Map();
  const statuses = new Map<number, number>();
  const started = performance.now();
  const tick = o.tickMs ?? 50;
  const runs = o.replicas.map(async (name, idx) => {
    const b = o.behaviour?.[name] ?? {};
    // One queue per target (its shard), each sent in order.
    const queues = new Map<string, Queued[]>();
    const next = new Map<string, number>();
    for (const tg of o.targets) {
      queues.set(tg.instance, []);
      next.set(tg.instance, tg.phase[name] ?? 0);
    }
    let restarted = false;
    let wasDown = false;
    while (true) {
      const elapsed = performance.now() - started;
      if (elapsed >= o.durationMs) break;
      const down = b.down?.(elapsed) ?? false;
      if (wasDown && !down && b.catchUp) {
        for (const tg of o.targets) {
          queues.get(tg.instance)!.push({
            key: keyOf(tg.job, tg.instance),
            t: o.t0 + Math.round(elapsed) + (tg.skewMs ?? 0),
            value: idx + 1,
          });
        }
      }
      wasDown = down;
      if (!restarted && b.restartAt !== undefined && elapsed >= b.restartAt) {
        restarted = true;
        for (const q of queues.values()) q.length = 0;
      }
      for (const tg of o.targets) {
        // Scrapes due by now; a down replica skips them (its scrape loop is not running).
        let at = next.get(tg.instance)!;
        while (at <= elapsed) {
          if (!down) {
            queues.get(tg.instance)!.push({
              key: keyOf(tg.job, tg.instance),
              t: o.t0 + at + (tg.skewMs ?? 0),
              value: idx + 1,
            });
          }
          at += tg.intervalMs;
        }
        next.set(tg.instance, at);
      }
      if (!down) {
        const sends = [...queues.entries()]
          .filter(([inst, q]) =>
            q.length && !(b.lagInstance?.instance === inst && elapsed < b.lagInstance.untilMs)
          )
          .map(async ([, q]) => {
            const batch = q.slice();
            const body = writeRequestBody(batch.map((s) => ({
              labels: {
                __name__: "up",
                __replica__: name,
                cluster: o.cluster,
                instance: s.key.split("/")[1],
                job: s.key.split("/")[0],
              },
              samples: [{ value: s.value, timestamp: s.t }],
            })));
            const url = o.urls[Math.floor(Math.random() * o.urls.length)];
            let status = 0;
            try {
              const res = await fetch(`${url}/write`, {
                method: "POST",
                headers: {
                  "content-encoding": "snappy",
                  "content-type": "application/x-protobuf",
                },
                body: body as BodyInit,
              });
              await res.body?.cancel();
              status = res.status;
            } catch {
              status = 599;
            }
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
            if (status >= 200 && status < 300) {
              q.splice(0, batch.length);
              for (const s of batch) {
                let a = acks.get(s.key);
                if (!a) acks.set(s.key, a = []);
                a.push(s.t);
              }
            } else if (status >= 400 && status < 500) {
              throw new Error(`replica ${name}: unexpected ${status}`);
            }
          });
        await Promise.all(sends);
      }
      await new Promise((r) => setTimeout(r, tick));
    }
  });
  await Promise.all(runs);
  return { acks, statuses };
}

/** How one series fared: rounds lost and doubled (docs/architecture.md, HA invariant 2). */
export interface Judgement {
  lost: number;
  doubled: number;
  stored: number;
}

/**
 * Judges one series: `stored` sample times (ms), `ackedBy` the times each
 * replica got a 2xx for, `intervalMs` its interval. Doubled: consecutive
 * stored samples closer than half an interval, unless one replica itself
 * sent both (a catch-up scrape). Lost: acknowledged rounds (acknowledged
 * samples more than half an interval apart) with no stored sample within
 * 0.75 of an interval, i.e. inside a gap of more than 1.5 intervals.
 */
export function judge(stored: number[], ackedBy: number[][], intervalMs: number): Judgement {
  const s = [...stored].sort((a, b) => a - b);
  const a = [...new Set(ackedBy.flat())].sort((x, y) => x - y);
  const sets = ackedBy.map((times) => new Set(times));
  let doubled = 0;
  for (let i = 1; i < s.length; i++) {
    if (s[i] - s[i - 1] >= intervalMs / 2) continue;
    if (sets.some((m) => m.has(s[i]) && m.has(s[i - 1]))) continue;
    doubled++;
  }
  let lost = 0;
  let lastLost = -Infinity;
  let j = 0;
  for (const t of a) {
    while (j < s.length && s[j] < t) j++;
    const near = Math.min(
      j < s.length ? s[j] - t : Infinity,
      j > 0 ? t - s[j - 1] : Infinity,
    );
    if (near > 0.75 * intervalMs && t - lastLost >= intervalMs / 2) {
      lost++;
      lastLost = t;
    }
  }
  return { lost, doubled, stored: s.length };
}
