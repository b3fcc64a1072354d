/**
 * The lease rules (src/ha/lease.ts) and the HA filter (src/ha/filter.ts)
 * with an injected clock and an in-memory lease store that follows the SQL
 * functions' rules, so every instant is exact.
 */
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import {
  judge,
  type LeaseInterval,
  type LeaseRow,
  Verdict,
  viewFromRow,
} from "../../src/ha/lease.ts";
import type { LeaseStore } from "../../src/ha/lease_store.ts";
import { HaFilter } from "../../src/ha/filter.ts";
import { BadRequestError, UnavailableError } from "../../src/errors.ts";
import type { DecodedWrite } from "../../src/remote_write/decode.ts";
import { ConnectorMetrics } from "../../src/telemetry/metrics.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

const timings = { leaseTimeoutMs: 60_000, leaseRefreshMs: 10_000, failoverTimeoutMs: 30_000 };

/** The database's clock and the connector's clock, both under the test's control. */
class Clock {
  t = 1_000_000;
  now = () => this.t;
  advance(ms: number) {
    this.t += ms;
  }
}

/** An in-memory LeaseStore with the same rules as the SQL functions (boundary: max + 1 ms). */
class MemoryLeaseStore implements LeaseStore {
  leases = new Map<string, { row: LeaseRow; lastHeard: number }>();
  logs: (LeaseInterval & { cluster: string })[] = [];
  calls: string[] = [];
  constructor(readonly clock: Clock) {}

  #state(cluster: string): LeaseRow {
    const l = this.leases.get(cluster)!;
    return { ...l.row, heardAgeMs: this.clock.now() - l.lastHeard };
  }

  updateLease(cluster: string, replica: string, min: number, max: number, heardAgo: number) {
    this.calls.push(`update ${cluster} ${replica}`);
    const heard = this.clock.now() - heardAgo;
    const l = this.leases.get(cluster);
    if (!l) {
      const row = {
        cluster,
        leader: replica,
        start: min,
        until: max + timings.leaseTimeoutMs,
        maxTime: max,
        heardAgeMs: 0,
      };
      this.leases.set(cluster, { row, lastHeard: heard });
      this.logs.push({ cluster, leader: replica, start: min, until: row.until });
    } else if (l.row.leader === replica) {
      l.row.maxTime = Math.max(l.row.maxTime, max);
      l.row.until = Math.max(l.row.until, max + timings.leaseTimeoutMs);
      l.lastHeard = Math.max(l.lastHeard, heard);
      this.logs.find((x) => x.cluster === cluster && x.start === l.row.start)!.until = l.row.until;
    }
    return Promise.resolve(this.#state(cluster));
  }

  tryChangeLeader(cluster: string, replica: string, max: number) {
    this.calls.push(`takeover ${cluster} ${replica}`);
    const l = this.leases.get(cluster)!;
    if (l.row.leader !== replica && this.clock.now() - l.lastHeard >= timings.failoverTimeoutMs) {
      const boundary = l.row.maxTime + 1;
      this.logs.find((x) => x.cluster === cluster && x.start === l.row.start)!.until = boundary;
      l.row = {
        cluster,
        leader: replica,
        start: boundary,
        until: Math.max(boundary, max) + timings.leaseTimeoutMs,
        maxTime: boundary - 1,
        heardAgeMs: 0,
      };
      l.lastHeard = this.clock.now();
      this.logs.push({ cluster, leader: replica, start: boundary, until: l.row.until });
    }
    return Promise.resolve(this.#state(cluster));
  }

  getLease(cluster: string) {
    this.calls.push(`get ${cluster}`);
    return Promise.resolve(this.leases.has(cluster) ? this.#state(cluster) : null);
  }

  pastLeases(cluster: string, before: number, limit: number) {
    return Promise.resolve(
      this.logs.filter((x) => x.cluster === cluster && x.start < before)
        .sort((a, b) => b.start - a.start).slice(0, limit)
        .map(({ leader, start, until }) => ({ leader, start, until: Math.min(until, before) })),
    );
  }
}

/** A request from `replica` of `cluster` with one series `up` and samples at `times`. */
function request(cluster: string, replica: string, times: number[]): DecodedWrite {
  const labels = [
    { name: "__name__", value: "up" },
    { name: "__replica__", value: replica },
    { name: "cluster", value: cluster },
    { name: "job", value: "node" },
  ];
  return {
    series: [{ labels, timestamps: times, values: new Float64Array(times.map(() => 1)) }],
    samples: times.length,
  };
}

function setup() {
  const clock = new Clock();
  const store = new MemoryLeaseStore(clock);
  const metrics = new ConnectorMetrics();
  const filter = new HaFilter({
    store,
    timings,
    clusterLabel: "cluster",
    replicaLabel: "__replica__",
    metrics,
    log: silentLogger,
    now: clock.now,
    wallNow: () => 100_000,
    holdMs: 0,
  });
  /** Applies a request and returns the kept timestamps, committing them like the handler does. */
  const send = async (cluster: string, replica: string, times: number[]) => {
    const r = await filter.apply(request(cluster, replica, times));
    r.guard?.();
    r.committed?.();
    return r.series.flatMap((s) => Array.from(s.timestamps));
  };
  return { clock, store, metrics, filter, send };
}

Deno.test("judge() keeps the leader's samples inside its trusted lease and renews outside it", () => {
  const v = viewFromRow(
    { cluster: "c", leader: "r1", start: 100, until: 100_000, maxTime: 50_000, heardAgeMs: 0 },
    0,
    timings,
    [],
  );
  assertEquals(v.windowMs, timings.failoverTimeoutMs / 2);
  assertEquals(judge(v, "r1", 100, 0), Verdict.Keep);
  assertEquals(judge(v, "r1", 99_999, 0), Verdict.Keep);
  assertEquals(judge(v, "r1", 100_000, 0), Verdict.Renew, "past lease_until needs an extension");
  assertEquals(judge(v, "r1", 500, v.validUntil), Verdict.Renew, "trust lapsed");
  assertEquals(judge(v, "r2", 35_000, 0), Verdict.NotLeader, "covered by the leader");
  assertEquals(
    judge(v, "r2", 35_001, 0),
    Verdict.Ahead,
    "within the handover window of the leader's newest sample: held back, not dropped",
  );
  assertEquals(judge(v, "r2", 60_000, 0), Verdict.Ahead, "not yet covered by the leader");
  assertEquals(judge(v, "r1", 99, 0), Verdict.TooOld, "before every known lease");
});

Deno.test("judge() stores a replayed sample only inside its sender's own past lease", () => {
  const past = [{ leader: "r2", start: 50, until: 100 }, { leader: "r1", start: 0, until: 50 }];
  const v = viewFromRow(
    { cluster: "c", leader: "r2", start: 100, until: 1000, maxTime: 500, heardAgeMs: 0 },
    0,
    timings,
    past,
  );
  assertEquals(judge(v, "r1", 10, 0), Verdict.Keep, "r1 owned [0, 50)");
  assertEquals(judge(v, "r1", 60, 0), Verdict.NotLeader, "r2 owned [50, 100)");
  assertEquals(judge(v, "r2", 60, 0), Verdict.Keep);
  assertEquals(judge(v, "r2", -1, 0), Verdict.TooOld);
});

Deno.test("viewFromRow() trusts the leader until the failover timeout minus a margin after it was last heard", () => {
  const row = { cluster: "c", leader: "r1", start: 0, until: 10, maxTime: 5, heardAgeMs: 4_000 };
  const v = viewFromRow(row, 100_000, timings, []);
  assertEquals(v.overdueAt, 100_000 - 4_000 + 30_000);
  assert(v.validUntil < v.overdueAt, "trust ends before any takeover is possible");
});

Deno.test("HaFilter makes the first replica heard from the leader and drops the other", async () => {
  const { send, store, metrics } = setup();
  assertEquals(await send("c1", "r1", [1000, 20_000]), [1000, 20_000]);
  assertEquals(store.leases.get("c1")!.row.leader, "r1");
  assertEquals(await send("c1", "r2", [1500, 4000]), [], "r2's samples are covered by r1");
  assertEquals(metrics.samplesDropped.get({ cluster: "c1", reason: "not_leader" }), 2);
  assertEquals(metrics.haLeader.get({ cluster: "c1", replica: "r1" }), 1);
});

Deno.test("HaFilter strips the replica label and keeps the cluster label", async () => {
  const { filter } = setup();
  const r = await filter.apply(request("c1", "r1", [1000]));
  assertEquals(r.series[0].labels.map((l) => l.name), ["__name__", "cluster", "job"]);
});

Deno.test("HaFilter passes series without HA labels through and refuses a series with only one", async () => {
  const { filter } = setup();
  const plain: DecodedWrite = {
    series: [{
      labels: [{ name: "__name__", value: "up" }],
      timestamps: [1],
      values: new Float64Array([1]),
    }],
    samples: 1,
  };
  assertEquals((await filter.apply(plain)).series, plain.series);
  const half: DecodedWrite = {
    series: [{
      labels: [{ name: "__name__", value: "up" }, { name: "cluster", value: "c1" }],
      timestamps: [1],
      values: new Float64Array([1]),
    }],
    samples: 1,
  };
  const err = await assertRejects(() => filter.apply(half), BadRequestError);
  assert(err.message.includes('"__replica__"'), err.message);
});

Deno.test("HaFilter extends the lease through the reporter, not per request", async () => {
  const { send, store, filter, clock } = setup();
  await send("c1", "r1", [1000]);
  const before = store.calls.length;
  for (let i = 1; i <= 20; i++) {
    clock.advance(100);
    await send("c1", "r1", [1000 + i * 100]);
  }
  assertEquals(store.calls.length, before, "no database call while the lease is trusted");
  await filter.report();
  assertEquals(store.calls.slice(before), ["update c1 r1"]);
  assertEquals(store.leases.get("c1")!.row.maxTime, 3000);
  assertEquals(store.leases.get("c1")!.row.until, 3000 + timings.leaseTimeoutMs);
});

Deno.test("HaFilter answers 503 to a follower ahead of a live leader, and takes over exactly at the failover timeout", async () => {
  const { send, store, clock, filter } = setup();
  await send("c1", "r1", [10_000]);
  await filter.report();
  // r1 goes silent. r2 is ahead of r1's last sample: neither stored nor dropped.
  clock.advance(timings.failoverTimeoutMs - 1);
  await assertRejects(() => send("c1", "r2", [10_500, 11_000]), UnavailableError);
  assertEquals(store.leases.get("c1")!.row.leader, "r1", "not before the timeout");
  clock.advance(1);
  assertEquals(await send("c1", "r2", [10_000, 10_500, 11_000]), [10_500, 11_000]);
  const lease = store.leases.get("c1")!.row;
  assertEquals([lease.leader, lease.start], ["r2", 10_001], "starts right after r1's last sample");
  // r1 comes back: it is a follower now; its samples near r2's newest are
  // held back (503), older ones are covered by r2 and dropped.
  await assertRejects(() => send("c1", "r1", [11_000]), UnavailableError);
  assertEquals(await send("c1", "r2", [30_000]), [30_000]);
  assertEquals(await send("c1", "r1", [11_000, 12_000]), []);
});

Deno.test("HaFilter stores a restarted replica's replay inside its own past lease and drops it outside", async () => {
  const { send, clock, filter } = setup();
  await send("c1", "r1", [10_000, 11_000, 12_000]);
  await filter.report();
  clock.advance(timings.failoverTimeoutMs);
  assertEquals(await send("c1", "r2", [12_500, 13_000]), [12_500, 13_000]);
  // r1 restarts and replays its WAL: [10 000, 12 001) was its own.
  assertEquals(await send("c1", "r1", [11_000, 12_000]), [11_000, 12_000]);
  // r2 replays older samples that fell in r1's lease: dropped.
  assertEquals(await send("c1", "r2", [11_500, 13_500]), [13_500]);
});

Deno.test("HaFilter handles a request mixing clusters series by series", async () => {
  const { filter } = setup();
  const a = request("c1", "r1", [1000]);
  const b = request("c2", "r2", [1000]);
  const mixed: DecodedWrite = { series: [...a.series, ...b.series], samples: 2 };
  const r = await filter.apply(mixed);
  assertEquals(r.series.length, 2);
});

Deno.test("HaFilter refuses the write (503) when trust in the lease lapses before the data is sent", async () => {
  const { filter, clock } = setup();
  const r = await filter.apply(request("c1", "r1", [1000]));
  clock.advance(timings.failoverTimeoutMs);
  let refused = false;
  try {
    r.guard?.();
  } catch (err) {
    refused = err instanceof UnavailableError;
  }
  assert(refused, "the guard must refuse");
});

Deno.test("HaFilter keeps memory bounded by evicting idle clusters", async () => {
  const clock = new Clock();
  const filter = new HaFilter({
    store: new MemoryLeaseStore(clock),
    timings,
    clusterLabel: "cluster",
    replicaLabel: "__replica__",
    metrics: new ConnectorMetrics(),
    log: silentLogger,
    now: clock.now,
    holdMs: 0,
    maxClusters: 10,
  });
  for (let i = 0; i < 100; i++) {
    const r = await filter.apply(request(`c${i}`, "r1", [1000]));
    r.committed?.();
    if (i % 10 === 9) await filter.report();
  }
  assert(filter.clusterCount <= 11, `kept ${filter.clusterCount} clusters`);
});

Deno.test("judge() drops a sample further ahead than the limit", () => {
  const v = viewFromRow(
    { cluster: "c", leader: "r1", start: 0, until: 1000, maxTime: 500, heardAgeMs: 0 },
    0,
    timings,
    [],
  );
  assertEquals(judge(v, "r1", 900, 0, 900), Verdict.Keep);
  assertEquals(judge(v, "r1", 901, 0, 900), Verdict.TooNew);
});

Deno.test("HaFilter drops a leader's sample far in the future instead of stretching its lease", async () => {
  const { send, store, metrics } = setup();
  await send("c1", "r1", [1000]);
  const far = 100_000 + timings.leaseTimeoutMs + 1;
  assertEquals(await send("c1", "r1", [2000, far]), [2000]);
  assertEquals(store.leases.get("c1")!.row.until, 1000 + timings.leaseTimeoutMs);
  assertEquals(metrics.samplesDropped.get({ cluster: "c1", reason: "too_new" }), 1);
});

Deno.test("HaFilter answers 503 on a database failure and 400 on a name the lease index cannot hold", async () => {
  for (
    const [code, expected] of [["08006", UnavailableError], ["54000", BadRequestError]] as const
  ) {
    const clock = new Clock();
    const store = new MemoryLeaseStore(clock);
    store.getLease = () => Promise.reject(Object.assign(new Error("boom"), { code }));
    const filter = new HaFilter({
      store,
      timings,
      clusterLabel: "cluster",
      replicaLabel: "__replica__",
      metrics: new ConnectorMetrics(),
      log: silentLogger,
      now: clock.now,
      holdMs: 0,
    });
    await assertRejects(() => filter.apply(request("c1", "r1", [1000])), expected);
  }
});
