/**
 * The lease rules (src/ha/lease.ts), the per-cluster state (clusters.ts)
 * and the HA filter (filter.ts), with an injected clock, injected timers
 * and an in-memory lease store that follows the SQL functions' rules
 * (update_lease, try_change_leader of migration 4), so every instant is
 * exact and no test sleeps.
 */
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import {
  type LeaseInterval,
  type LeaseRow,
  type LeaseView,
  overdue,
  Route,
  route,
  silent,
  typicalTime,
  viewFromRow,
} from "../../src/ha/lease.ts";
import type { LeaseStore, ReconcileResult } from "../../src/ha/lease_store.ts";
import { HaClusters, type Timers } from "../../src/ha/clusters.ts";
import { HaFilter } from "../../src/ha/filter.ts";
import { BadRequestError, UnavailableError } from "../../src/errors.ts";
import type { DecodedSeries, DecodedWrite, FilterResult, WriteSeries } from "../../src/ingest.ts";
import { ConnectorMetrics } from "../../src/telemetry/metrics.ts";
import { Logger } from "../../src/telemetry/log.ts";

const timings = { leaseTimeoutMs: 60_000, leaseRefreshMs: 10_000, failoverTimeoutMs: 30_000 };
const FAILOVER = timings.failoverTimeoutMs;

/** The connector's monotonic clock and the database's clock, both under the test's control. */
class Clock {
  t = 1_000_000;
  now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Timers whose interval callbacks the test fires by hand. */
class FakeTimers implements Timers {
  readonly intervals = new Map<number, { fn: () => void; ms: number }>();
  readonly cleared: unknown[] = [];
  #next = 1;
  setInterval(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.intervals.set(id, { fn, ms });
    return id;
  }
  clearInterval(id: unknown): void {
    this.cleared.push(id);
    this.intervals.delete(id as number);
  }
  /** Runs every interval callback once. */
  fire(): void {
    for (const { fn } of [...this.intervals.values()]) fn();
  }
}

interface StoredLease {
  leader: string;
  start: number;
  until: number;
  maxTime: number;
  /** Database-clock instant the leader was last heard. */
  lastHeard: number;
}

/** A PostgreSQL error as postgres.js rejects with it. */
function pgError(code: string, message = `error ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * An in-memory LeaseStore with the rules of the SQL functions: the first
 * replica wins, only the leader extends, a takeover only after the
 * failover timeout, starting at min(max_time + 1 ms, hint), never before
 * the old start. Records every call (synchronously, when it is made).
 */
class MemoryLeaseStore implements LeaseStore {
  readonly leases = new Map<string, StoredLease>();
  readonly logs: (LeaseInterval & { cluster: string })[] = [];
  readonly calls: unknown[][] = [];
  /** When set, every call waits for it before it runs. */
  gate: Promise<void> | null = null;
  readonly #failures = new Map<string, unknown[]>();

  constructor(readonly clock: Clock) {}

  /** Makes the next call of `method` reject with `err`. */
  failNext(method: keyof LeaseStore, err: unknown): void {
    const q = this.#failures.get(method) ?? [];
    q.push(err);
    this.#failures.set(method, q);
  }

  /** The calls of `method` made so far, without the method name. */
  callsOf(method: keyof LeaseStore): unknown[][] {
    return this.calls.filter((c) => c[0] === method).map((c) => c.slice(1));
  }

  /** Sets a lease as another connector would have (heard now unless told). */
  setLease(cluster: string, leader: string, start: number, maxTime = start, heardAgo = 0): void {
    this.leases.set(cluster, {
      leader,
      start,
      until: maxTime + timings.leaseTimeoutMs,
      maxTime,
      lastHeard: this.clock.now() - heardAgo,
    });
  }

  /** Another connector reports the leader of `cluster` heard just now. */
  hear(cluster: string): void {
    this.leases.get(cluster)!.lastHeard = this.clock.now();
  }

  #state(cluster: string): LeaseRow {
    const l = this.leases.get(cluster)!;
    return {
      cluster,
      leader: l.leader,
      start: l.start,
      until: l.until,
      maxTime: l.maxTime,
      heardAgeMs: this.clock.now() - l.lastHeard,
    };
  }

  #call<T>(method: keyof LeaseStore, args: unknown[], body: () => T): Promise<T> {
    this.calls.push([method, ...args]);
    const err = this.#failures.get(method)?.shift();
    const wait = this.gate ?? Promise.resolve();
    return wait.then(() => {
      if (err !== undefined) throw err;
      return body();
    });
  }

  updateLease(
    cluster: string,
    replica: string,
    minTime: number,
    maxTime: number,
    heardAgoMs: number,
  ): Promise<LeaseRow> {
    return this.#call("updateLease", [cluster, replica, minTime, maxTime, heardAgoMs], () => {
      const heard = this.clock.now() - Math.max(0, heardAgoMs);
      const l = this.leases.get(cluster);
      if (!l) {
        this.setLease(cluster, replica, minTime, maxTime, this.clock.now() - heard);
        const until = maxTime + timings.leaseTimeoutMs;
        this.logs.push({ cluster, leader: replica, start: minTime, until });
      } else if (l.leader === replica) {
        l.maxTime = Math.max(l.maxTime, maxTime);
        l.until = Math.max(l.until, maxTime + timings.leaseTimeoutMs);
        l.lastHeard = Math.max(l.lastHeard, heard);
      }
      return this.#state(cluster);
    });
  }

  tryChangeLeader(cluster: string, replica: string, boundaryHint: number): Promise<LeaseRow> {
    return this.#call("tryChangeLeader", [cluster, replica, boundaryHint], () => {
      const l = this.leases.get(cluster)!;
      if (l.leader === replica || this.clock.now() - l.lastHeard < FAILOVER) {
        return this.#state(cluster);
      }
      const afterMax = l.maxTime + 1;
      const hint = Number.isFinite(boundaryHint) ? boundaryHint : afterMax;
      const boundary = Math.max(l.start, Math.min(afterMax, hint));
      this.setLease(cluster, replica, boundary, boundary - 1);
      const until = boundary + timings.leaseTimeoutMs;
      this.logs.push({ cluster, leader: replica, start: boundary, until });
      return this.#state(cluster);
    });
  }

  getLease(cluster: string): Promise<LeaseRow | null> {
    return this.#call("getLease", [cluster], () => {
      return this.leases.has(cluster) ? this.#state(cluster) : null;
    });
  }

  pastLeases(cluster: string, before: number, limit: number): Promise<LeaseInterval[]> {
    return this.#call(
      "pastLeases",
      [cluster, before, limit],
      () =>
        this.logs.filter((x) => x.cluster === cluster && x.start < before)
          .sort((a, b) => b.start - a.start).slice(0, limit)
          .map(({ leader, start, until }) => ({ leader, start, until: Math.min(until, before) })),
    );
  }

  reconcile(): Promise<ReconcileResult> {
    return this.#call("reconcile", [], () => ({ decided: 0, filled: 0, waiting: 0, undone: 0 }));
  }

  seriesIntervals(): Promise<{ intervals: [number, number][]; at: number }> {
    return this.#call("seriesIntervals", [], () => ({ intervals: [], at: 0 }));
  }
}

/** One series `name` of `cluster` from `replica` (either label left out when undefined). */
function series(
  cluster: string | undefined,
  replica: string | undefined,
  times: number[],
  name = "up",
): DecodedSeries {
  const labels = [{ name: "__name__", value: name }];
  if (replica !== undefined) labels.push({ name: "__replica__", value: replica });
  if (cluster !== undefined) labels.push({ name: "cluster", value: cluster });
  labels.push({ name: "job", value: "node" });
  // Values are the timestamps in seconds, so that a split can be checked.
  return { labels, timestamps: times, values: new Float64Array(times.map((t) => t / 1000)) };
}

function request(...list: DecodedSeries[]): DecodedWrite {
  return { series: list, samples: list.reduce((n, s) => n + s.timestamps.length, 0) };
}

/** A series as `name [t1, t2…]`, with the label names checked for the replica label. */
function show(list: WriteSeries[] | undefined): string[] {
  return (list ?? []).map((s) => {
    const ts = Array.from(s.timestamps);
    assertEquals(Array.from(s.values), ts.map((t) => t / 1000), "values follow their timestamps");
    const name = s.labels.find((l) => l.name === "__name__")?.value;
    const cluster = s.labels.find((l) => l.name === "cluster")?.value ?? "-";
    const replica = s.labels.some((l) => l.name === "__replica__") ? " WITH REPLICA LABEL" : "";
    return `${cluster}/${name} [${ts.join(", ")}]${replica}`;
  });
}

function fences(r: FilterResult): { cluster: string; leader: string; start: number }[] {
  return (r.fences ?? []).map(({ cluster, leader, start }) => ({ cluster, leader, start }));
}

/** The rendered lines of metric `name` (registry exposition), without the header. */
function metricLines(metrics: ConnectorMetrics, name: string): string[] {
  return metrics.registry.render().split("\n").filter((l) => l.startsWith(name + "{"));
}

function setup(o: { maxClusters?: number } = {}) {
  const clock = new Clock();
  const store = new MemoryLeaseStore(clock);
  const metrics = new ConnectorMetrics();
  const timers = new FakeTimers();
  const logs: Record<string, unknown>[] = [];
  const log = new Logger("debug", "json", (line) => logs.push(JSON.parse(line)));
  const clusters = new HaClusters({
    store,
    timings,
    metrics,
    log,
    now: clock.now,
    timers,
    maxClusters: o.maxClusters,
  });
  const filter = new HaFilter({
    clusters,
    clusterLabel: "cluster",
    replicaLabel: "__replica__",
    metrics,
  });
  /** Applies a request and commits it, as the write handler does after a successful write. */
  const send = async (...list: DecodedSeries[]) => {
    const r = await filter.apply(request(...list));
    r.committed?.();
    return r;
  };
  return { clock, store, metrics, timers, logs, clusters, filter, send };
}

// ---------------------------------------------------------------- lease.ts

Deno.test("route() stores the leader's samples from its lease start on and stages every other", () => {
  const v: LeaseView = {
    cluster: "c1",
    leader: "r1",
    start: 10_000,
    maxTime: 20_000,
    overdueAt: 0,
  };
  assertEquals(route(v, "r1", 10_000), Route.Direct, "at the lease start");
  assertEquals(route(v, "r1", 99_000), Route.Direct, "after it, even past maxTime");
  assertEquals(route(v, "r1", 9_999), Route.Stage, "the leader before its lease");
  assertEquals(route(v, "r2", 10_000), Route.Stage, "a follower");
  assertEquals(route(v, "r2", 99_000), Route.Stage, "a follower, ahead of the leader");
  assertEquals(route(v, "r2", 0), Route.Stage);
});

Deno.test("viewFromRow() copies the lease and puts the overdue deadline at askedAt - heardAge + failover", () => {
  const row: LeaseRow = {
    cluster: "c1",
    leader: "r1",
    start: 10_000,
    until: 80_000,
    maxTime: 20_000,
    heardAgeMs: 4_000,
  };
  assertEquals(viewFromRow(row, 100_000, timings), {
    cluster: "c1",
    leader: "r1",
    start: 10_000,
    maxTime: 20_000,
    overdueAt: 100_000 - 4_000 + FAILOVER,
  });
  assertEquals(viewFromRow({ ...row, heardAgeMs: 0 }, 5, timings).overdueAt, 5 + FAILOVER);
  assertEquals(
    viewFromRow({ ...row, heardAgeMs: 45_000 }, 100_000, timings).overdueAt,
    85_000,
    "a leader silent for longer than the timeout is overdue at once",
  );
});

Deno.test("overdue() is true from overdueAt on", () => {
  const v: LeaseView = { cluster: "c1", leader: "r1", start: 0, maxTime: 0, overdueAt: 50_000 };
  assertEquals(overdue(v, 49_999), false);
  assertEquals(overdue(v, 50_000), true);
  assertEquals(overdue(v, 90_000), true);
});

Deno.test("silent() is true once the database has not heard the leader for the failover timeout", () => {
  const row = { cluster: "c1", leader: "r1", start: 0, until: 0, maxTime: 0 };
  assertEquals(silent({ ...row, heardAgeMs: 0 }, timings), false);
  assertEquals(silent({ ...row, heardAgeMs: FAILOVER - 1 }, timings), false);
  assertEquals(silent({ ...row, heardAgeMs: FAILOVER }, timings), true);
  assertEquals(silent({ ...row, heardAgeMs: FAILOVER * 10 }, timings), true);
});

Deno.test("typicalTime() is the lower median of the newest samples, unmoved by one far-off series", () => {
  assertEquals(typicalTime([]), -Infinity);
  assertEquals(typicalTime([7]), 7);
  assertEquals(typicalTime([300, 100, 200]), 200, "not the order given");
  assertEquals(typicalTime([400, 100, 300, 200]), 200, "lower median of an even count");
  assertEquals(typicalTime([1_000, 1_000, 1_000, 9e12]), 1_000, "a far-future series");
  assertEquals(typicalTime([1_000, 1_000, 5]), 1_000, "a lagging series");
  assertEquals(typicalTime([10, 9, 100_000, 20]), 10, "numeric, not lexicographic, order");
  const input = [3, 1, 2];
  typicalTime(input);
  assertEquals(input, [3, 1, 2], "the input is not sorted in place");
});

// -------------------------------------------------------------- HaFilter

Deno.test("HaFilter makes the first replica heard from the leader, its lease starting at its oldest sample", async () => {
  const { send, store, metrics } = setup();
  const r = await send(series("c1", "r1", [12_000, 13_000]), series("c1", "r1", [11_000], "a"));
  assertEquals(store.calls, [
    ["getLease", "c1"],
    ["updateLease", "c1", "r1", 11_000, 11_000, 0],
  ]);
  const l = store.leases.get("c1")!;
  assertEquals([l.leader, l.start, l.maxTime], ["r1", 11_000, 11_000]);
  assertEquals(show(r.series), ["c1/up [12000, 13000]", "c1/a [11000]"]);
  assertEquals(show(r.staged), []);
  assertEquals(metricLines(metrics, "promscale_ha_cluster_leader"), [
    'promscale_ha_cluster_leader{cluster="c1",replica="r1"} 1',
  ]);
});

Deno.test("HaFilter stores the leader's samples under one fence, without the replica label", async () => {
  const { send, filter, store, metrics } = setup();
  await send(series("c1", "r1", [10_000]));
  const calls = store.calls.length;
  const r = await filter.apply(
    request(series("c1", "r1", [11_000, 12_000]), series("c1", "r1", [11_500], "b")),
  );
  assertEquals(store.calls.length, calls, "no database call while the copy of the lease is fresh");
  assertEquals(show(r.series), ["c1/up [11000, 12000]", "c1/b [11500]"]);
  assertEquals(r.series[0].labels.map((l) => l.name), ["__name__", "cluster", "job"]);
  assertEquals(show(r.staged), []);
  assertEquals(fences(r), [{ cluster: "c1", leader: "r1", start: 10_000 }]);
  assertEquals(typeof r.fences![0].lost, "function");
  assertEquals(typeof r.committed, "function");
  assertEquals(metrics.samplesAccepted.get({ cluster: "c1" }), 1 + 3);
  assertEquals(metrics.samplesStaged.get({ cluster: "c1" }), 0);
});

Deno.test("HaFilter stages a follower's samples and drops none", async () => {
  const { send, store, metrics } = setup();
  await send(series("c1", "r1", [10_000]));
  const calls = store.calls.length;
  const r = await send(
    series("c1", "r2", [9_000, 10_000, 11_000]),
    series("c1", "r2", [10_500, 50_000], "b"),
  );
  assertEquals(show(r.series), []);
  assertEquals(show(r.staged), ["c1/up [9000, 10000, 11000]", "c1/b [10500, 50000]"]);
  assertEquals(r.staged![0].labels.map((l) => l.name), ["__name__", "cluster", "job"]);
  assertEquals(fences(r), []);
  assertEquals(r.committed, undefined, "nothing of the leader to note");
  assertEquals(store.calls.length, calls, "no database call while the copy of the lease is fresh");
  assertEquals(store.leases.get("c1")!.leader, "r1");
  assertEquals(metrics.samplesStaged.get({ cluster: "c1" }), 5);
  assertEquals(metrics.samplesAccepted.get({ cluster: "c1" }), 1);
});

Deno.test("HaFilter splits a leader series at its lease start: before is staged, from it on stored", async () => {
  const { send, store } = setup();
  // Another connector created the lease; r1's first request here has older samples.
  store.setLease("c1", "r1", 10_000, 12_000);
  const r = await send(
    series("c1", "r1", [8_000, 9_000, 10_000, 11_000]),
    series("c1", "r1", [11_000, 9_500, 12_000], "unordered"),
    series("c1", "r1", [7_000, 8_000], "old"),
  );
  assertEquals(store.calls, [["getLease", "c1"]], "an existing lease is not created again");
  assertEquals(show(r.series), ["c1/up [10000, 11000]", "c1/unordered [11000, 12000]"]);
  assertEquals(show(r.staged), [
    "c1/up [8000, 9000]",
    "c1/unordered [9500]",
    "c1/old [7000, 8000]",
  ]);
  assertEquals(fences(r), [{ cluster: "c1", leader: "r1", start: 10_000 }]);
});

Deno.test("HaFilter passes series without HA labels through untouched", async () => {
  const { filter, store } = setup();
  const plain = request(series(undefined, undefined, [1_000]), series(undefined, undefined, [2]));
  const r = await filter.apply(plain);
  assert(r.series === plain.series, "the request's own series");
  assertEquals(r.staged, undefined);
  assertEquals(r.fences, undefined);
  assertEquals(store.calls, [], "no lease needed");
  const mixed = await filter.apply(
    request(series("c1", "r1", [5_000]), series(undefined, undefined, [1_000], "plain")),
  );
  assertEquals(show(mixed.series), ["-/plain [1000]", "c1/up [5000]"]);
});

Deno.test("HaFilter refuses (400) a series with only one of the HA labels, naming the missing one", async () => {
  const { filter, store } = setup();
  const noReplica = request(series("c1", "r1", [1_000]), series("c1", undefined, [1_000], "b"));
  const e1 = await assertRejects(() => filter.apply(noReplica), BadRequestError);
  assert(e1.message.includes('Series 1 has HA label "cluster" but no "__replica__"'), e1.message);
  const noCluster = request(series(undefined, "r1", [1_000]));
  const e2 = await assertRejects(() => filter.apply(noCluster), BadRequestError);
  assert(e2.message.includes('Series 0 has HA label "__replica__" but no "cluster"'), e2.message);
  assertEquals(store.calls, [], "refused before any lease is looked at");
});

Deno.test("HaFilter routes several clusters of one request each by its own lease", async () => {
  const { send, store } = setup();
  store.setLease("c2", "r9", 0);
  const r = await send(
    series("c1", "r1", [5_000, 6_000]),
    series(undefined, undefined, [1_000], "plain"),
    series("c2", "r2", [5_000]),
    series("c3", "r3", [7_000]),
    series("c1", "r1", [6_000], "b"),
  );
  assertEquals(show(r.series), [
    "-/plain [1000]",
    "c1/up [5000, 6000]",
    "c1/b [6000]",
    "c3/up [7000]",
  ]);
  assertEquals(show(r.staged), ["c2/up [5000]"]);
  assertEquals(fences(r), [
    { cluster: "c1", leader: "r1", start: 5_000 },
    { cluster: "c3", leader: "r3", start: 7_000 },
  ]);
  assertEquals(
    [...store.leases].map(([c, l]) => `${c}:${l.leader}@${l.start}`),
    ["c2:r9@0", "c1:r1@5000", "c3:r3@7000"],
  );
});

Deno.test("HaFilter answers 503 on a database failure and 400 on a value the database refuses", async () => {
  for (
    const [code, expected] of [["08006", UnavailableError], ["54000", BadRequestError]] as const
  ) {
    const { filter, store } = setup();
    store.failNext("getLease", pgError(code));
    await assertRejects(() => filter.apply(request(series("c1", "r1", [1_000]))), expected);
  }
});

// -------------------------------------------------------------- takeover

Deno.test("HaFilter takes over for a follower once the leader is overdue, hinting the follower's typical time", async () => {
  const { send, store, clock, clusters, logs } = setup();
  await send(series("c1", "r1", [10_000, 50_000]));
  await clusters.tick(); // reports r1 heard now, written up to 50 000
  assertEquals(store.leases.get("c1")!.maxTime, 50_000);

  clock.advance(FAILOVER - 1);
  const before = await send(series("c1", "r2", [40_000]));
  assertEquals(show(before.staged), ["c1/up [40000]"]);
  assertEquals(store.callsOf("tryChangeLeader"), [], "not overdue yet: no question asked");
  assertEquals(store.callsOf("getLease").length, 1);

  clock.advance(1);
  const r = await send(
    series("c1", "r2", [39_000, 40_000], "a"),
    series("c1", "r2", [40_000, 41_000], "b"),
    series("c1", "r2", [41_000, 9e12], "future"),
  );
  assertEquals(store.callsOf("getLease").length, 2, "the overdue copy is checked");
  assertEquals(
    store.callsOf("tryChangeLeader"),
    [["c1", "r2", 41_000]],
    "the median of r2's newest samples, not the far-future one",
  );
  const l = store.leases.get("c1")!;
  assertEquals([l.leader, l.start], ["r2", 41_000], "min(max_time + 1, hint)");
  assertEquals(show(r.series), ["c1/b [41000]", "c1/future [41000, 9000000000000]"]);
  assertEquals(show(r.staged), ["c1/a [39000, 40000]", "c1/b [40000]"]);
  assertEquals(fences(r), [{ cluster: "c1", leader: "r2", start: 41_000 }]);
  const changed = logs.find((x) => x.msg === "HA leader changed");
  assertEquals(
    [changed?.cluster, changed?.from, changed?.to],
    ["c1", "r1", "r2"],
  );

  // r1 comes back: a follower now, staged, with no question asked.
  const calls = store.calls.length;
  const back = await send(series("c1", "r1", [51_000]));
  assertEquals(show(back.series), []);
  assertEquals(show(back.staged), ["c1/up [51000]"]);
  assertEquals(store.calls.length, calls);
});

Deno.test("HaFilter does not take over while the database heard the leader through another connector", async () => {
  const { send, store, clock } = setup();
  await send(series("c1", "r1", [10_000]));
  clock.advance(FAILOVER + 5_000);
  store.hear("c1"); // another connector reported r1 heard just now
  const r = await send(series("c1", "r2", [40_000]));
  assertEquals(store.callsOf("getLease").length, 2);
  assertEquals(store.callsOf("tryChangeLeader"), [], "the leader is not silent");
  assertEquals(show(r.staged), ["c1/up [40000]"]);
  assertEquals(store.leases.get("c1")!.leader, "r1");
  // The answer renewed the copy: no more questions until the new deadline.
  clock.advance(FAILOVER - 1);
  await send(series("c1", "r2", [41_000]));
  assertEquals(store.callsOf("getLease").length, 2);
  clock.advance(1);
  await send(series("c1", "r2", [42_000]));
  assertEquals(store.callsOf("getLease").length, 3);
});

Deno.test("HaFilter stages the samples and succeeds when a takeover is postponed by a lock timeout (55P03)", async () => {
  const { send, store, clock, logs } = setup();
  await send(series("c1", "r1", [10_000]));
  clock.advance(FAILOVER);
  store.failNext("tryChangeLeader", pgError("55P03", "canceling statement due to lock timeout"));
  const r = await send(series("c1", "r2", [40_000]));
  assertEquals(store.callsOf("tryChangeLeader"), [["c1", "r2", 40_000]]);
  assertEquals(show(r.series), []);
  assertEquals(show(r.staged), ["c1/up [40000]"]);
  assertEquals(store.leases.get("c1")!.leader, "r1");
  assert(logs.some((x) => x.msg === "HA takeover postponed: lease busy" && x.level === "debug"));
});

Deno.test("HaFilter asks the database about an overdue leader at most every 200 ms per cluster", async () => {
  const { send, store, clock } = setup();
  await send(series("c1", "r1", [10_000]));
  clock.advance(FAILOVER);
  store.failNext("tryChangeLeader", pgError("55P03"));
  await send(series("c1", "r2", [40_000]));
  assertEquals(store.callsOf("getLease").length, 2);
  assertEquals(store.callsOf("tryChangeLeader").length, 1);
  // Still overdue, but asked 199 ms ago: the samples are staged without a question.
  clock.advance(199);
  const r = await send(series("c1", "r2", [40_500]));
  assertEquals(show(r.staged), ["c1/up [40500]"]);
  assertEquals(store.callsOf("getLease").length, 2);
  assertEquals(store.callsOf("tryChangeLeader").length, 1);
  // Another cluster is not held up by c1's spacing.
  store.setLease("c2", "r1", 0, 0, FAILOVER);
  await send(series("c2", "r2", [40_000]));
  assertEquals(store.callsOf("tryChangeLeader").length, 2);
  // 200 ms after the first question: asked again, and the takeover goes through.
  clock.advance(1);
  const again = await send(series("c1", "r2", [41_000]));
  assertEquals(store.callsOf("getLease").length, 5, "c2 asked twice (its copy, then overdue)");
  assertEquals(store.callsOf("tryChangeLeader").slice(2), [["c1", "r2", 41_000]]);
  assertEquals(store.leases.get("c1")!.leader, "r2");
  assertEquals(show(again.series), ["c1/up [41000]"]);
});

Deno.test("HaFilter answers 503 when a takeover fails with another database error", async () => {
  const { filter, send, store, clock } = setup();
  await send(series("c1", "r1", [10_000]));
  clock.advance(FAILOVER);
  store.failNext("tryChangeLeader", pgError("08006", "connection failure"));
  await assertRejects(
    () => filter.apply(request(series("c1", "r2", [40_000]))),
    UnavailableError,
    "08006",
  );
});

Deno.test("A lost fence makes the next request ask the database for the lease again", async () => {
  const { send, filter, store } = setup();
  await send(series("c1", "r1", [10_000]));
  // Another connector hands the lease to r2; this connector's copy is stale.
  store.setLease("c1", "r2", 20_000);
  const calls = store.calls.length;
  const stale = await filter.apply(request(series("c1", "r1", [15_000])));
  assertEquals(store.calls.length, calls, "the stale copy is trusted until proven stale");
  assertEquals(fences(stale), [{ cluster: "c1", leader: "r1", start: 10_000 }]);
  stale.fences![0].lost!(); // the writer's fence check failed: 503, Prometheus resends
  const again = await send(series("c1", "r1", [15_000]));
  assertEquals(store.calls.slice(calls), [["getLease", "c1"]]);
  assertEquals(show(again.series), []);
  assertEquals(show(again.staged), ["c1/up [15000]"]);
  const r2 = await send(series("c1", "r2", [21_000]));
  assertEquals(show(r2.series), ["c1/up [21000]"]);
  assertEquals(fences(r2), [{ cluster: "c1", leader: "r2", start: 20_000 }]);
});

// ------------------------------------------------------------ HaClusters

Deno.test("HaClusters.tick() reports the leader's progress: heard-ago by the clock, written by committed()", async () => {
  const { filter, store, clock, clusters } = setup();
  const r = await filter.apply(
    request(
      series("c1", "r1", [10_000, 20_000], "a"),
      series("c1", "r1", [10_000, 22_000], "b"),
      series("c1", "r1", [10_000, 21_000], "c"),
    ),
  );
  const created = store.calls.length;
  clock.advance(2_500);
  await clusters.tick();
  assertEquals(
    store.calls.slice(created),
    [["updateLease", "c1", "r1", 10_000, 10_000, 2_500]],
    "heard, nothing committed yet: the lease start",
  );
  r.committed!();
  clock.advance(1_000);
  await clusters.tick();
  assertEquals(
    store.calls.slice(created + 1),
    [["updateLease", "c1", "r1", 10_000, 21_000, 3_500]],
    "the typical newest committed sample",
  );
  const l = store.leases.get("c1")!;
  assertEquals([l.maxTime, l.until, clock.now() - l.lastHeard], [21_000, 81_000, 3_500]);
  await clusters.tick();
  assertEquals(store.calls.length, created + 2, "nothing new: nothing reported");
});

Deno.test("HaClusters.tick() refreshes the copy of a cluster with requests and leaves idle ones alone", async () => {
  const { send, store, clusters, metrics } = setup();
  store.setLease("c2", "r9", 0);
  await send(series("c2", "r2", [5_000]));
  assertEquals(store.calls, [["getLease", "c2"]]);
  await clusters.tick();
  assertEquals(store.calls.slice(1), [["getLease", "c2"]], "touched by a follower request");
  await clusters.tick();
  assertEquals(store.calls.length, 2, "no request since: not refreshed");
  // Another connector hands the lease to r2; the next refresh adopts it.
  store.setLease("c2", "r2", 6_000);
  const stale = await send(series("c2", "r2", [7_000]));
  assertEquals(show(stale.staged), ["c2/up [7000]"]);
  await clusters.tick();
  assertEquals(store.calls.slice(2), [["getLease", "c2"]]);
  const r = await send(series("c2", "r2", [8_000]));
  assertEquals(show(r.series), ["c2/up [8000]"]);
  assertEquals(fences(r), [{ cluster: "c2", leader: "r2", start: 6_000 }]);
  assertEquals(metrics.haLeaderChanges.get({ cluster: "c2" }), 1);
});

Deno.test("HaClusters.tick() logs a store error, goes on with other clusters, and retries later", async () => {
  const { send, store, clusters, logs } = setup();
  await send(series("c1", "r1", [10_000]));
  store.setLease("c2", "r9", 0);
  await send(series("c2", "r2", [5_000]));
  const calls = store.calls.length;
  store.failNext("updateLease", new Error("connection reset"));
  await clusters.tick();
  assertEquals(store.calls.slice(calls), [
    ["updateLease", "c1", "r1", 10_000, 10_000, 0],
    ["getLease", "c2"],
  ]);
  const warn = logs.find((x) => x.level === "warn");
  assertEquals(
    [warn?.msg, warn?.cluster, warn?.err],
    ["Cannot report or refresh an HA lease", "c1", "connection reset"],
  );
  await clusters.tick();
  assertEquals(
    store.calls.slice(calls + 2),
    [["updateLease", "c1", "r1", 10_000, 10_000, 0]],
    "the unreported progress is reported on the next tick",
  );
});

Deno.test("HaClusters.start() ticks on the injected interval, one tick at a time; stop() clears it after a last report", async () => {
  const { send, store, clusters, timers, clock } = setup();
  clusters.start();
  clusters.start();
  assertEquals(
    [...timers.intervals.values()].map((i) => i.ms),
    [timings.leaseRefreshMs],
    "one timer",
  );
  await send(series("c1", "r1", [10_000]));
  const calls = store.calls.length;
  let release!: () => void;
  store.gate = new Promise<void>((r) => release = r);
  clock.advance(1_000);
  timers.fire();
  assertEquals(store.calls.slice(calls), [["updateLease", "c1", "r1", 10_000, 10_000, 1_000]]);
  timers.fire(); // while the first tick waits for the store
  assertEquals(store.calls.length, calls + 1, "no second tick while one runs");
  // New progress before stop(): the last report carries it.
  await send(series("c1", "r1", [11_000]));
  const stopping = clusters.stop();
  assertEquals([...timers.intervals.keys()], [], "the timer is cleared");
  assertEquals(timers.cleared, [1]);
  store.gate = null;
  release();
  await stopping;
  assertEquals(store.calls.slice(calls + 1), [
    ["updateLease", "c1", "r1", 10_000, 11_000, 0],
  ]);
  assertEquals(store.leases.get("c1")!.maxTime, 11_000);
});

Deno.test("HaClusters keeps at most maxClusters clusters, evicting the least recently used", async () => {
  const { send, store, clusters, metrics } = setup({ maxClusters: 3 });
  for (const c of ["c1", "c2", "c3"]) await send(series(c, "r1", [10_000]));
  await clusters.tick(); // every leader's progress reported: all may go
  assertEquals(clusters.size, 3);
  await send(series("c1", "r2", [10_500])); // c1 used again: c2 is now the least recent
  await send(series("c4", "r1", [10_000]));
  assertEquals(clusters.size, 3);
  assertEquals(metricLines(metrics, "promscale_ha_cluster_leader"), [
    'promscale_ha_cluster_leader{cluster="c1",replica="r1"} 1',
    'promscale_ha_cluster_leader{cluster="c3",replica="r1"} 1',
    'promscale_ha_cluster_leader{cluster="c4",replica="r1"} 1',
  ]);
  // c1 and c3 are still known: no question.
  let calls = store.calls.length;
  await send(series("c1", "r1", [11_000]), series("c3", "r1", [11_000]));
  assertEquals(store.calls.length, calls);
  // c2 was forgotten: asked again, and now c4 is the least recently used.
  await clusters.tick();
  calls = store.calls.length;
  await send(series("c2", "r1", [11_000]));
  assertEquals(store.calls.slice(calls), [["getLease", "c2"]]);
  assertEquals(clusters.size, 3);
  assertEquals(metricLines(metrics, "promscale_ha_cluster_leader"), [
    'promscale_ha_cluster_leader{cluster="c1",replica="r1"} 1',
    'promscale_ha_cluster_leader{cluster="c3",replica="r1"} 1',
    'promscale_ha_cluster_leader{cluster="c2",replica="r1"} 1',
  ]);
});

// --------------------------------------------------------------- metrics

Deno.test("The leader gauge and the leader-change counter follow an adopted takeover", async () => {
  const { send, store, clock, metrics } = setup();
  await send(series("c1", "r1", [10_000]));
  assertEquals(metricLines(metrics, "promscale_ha_cluster_leader"), [
    'promscale_ha_cluster_leader{cluster="c1",replica="r1"} 1',
  ]);
  assertEquals(metricLines(metrics, "promscale_ha_leader_changes_total"), []);
  // A refresh of the same lease is no change.
  clock.advance(FAILOVER);
  store.hear("c1");
  await send(series("c1", "r2", [40_000]));
  assertEquals(metricLines(metrics, "promscale_ha_leader_changes_total"), []);
  clock.advance(FAILOVER);
  await send(series("c1", "r2", [70_000]));
  assertEquals(store.leases.get("c1")!.leader, "r2");
  assertEquals(metricLines(metrics, "promscale_ha_cluster_leader"), [
    'promscale_ha_cluster_leader{cluster="c1",replica="r2"} 1',
  ]);
  assertEquals(metricLines(metrics, "promscale_ha_leader_changes_total"), [
    'promscale_ha_leader_changes_total{cluster="c1"} 1',
  ]);
  assertEquals(metrics.haLeader.get({ cluster: "c1", replica: "r1" }), 0);
});
