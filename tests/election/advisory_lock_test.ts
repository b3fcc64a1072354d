/**
 * The advisory-lock election in process, on the real PostgreSQL, with short
 * periods: who leads, hand-over when the holder's Prometheus falls silent,
 * a terminated or hung lock connection, lock keys beyond 32 bits, and the
 * filter's answers. Every test samples both elections all along and
 * fails if they ever both claim to lead at once (they share one clock here).
 */
import {
  AdvisoryLockElection,
  type AdvisoryLockElectionOptions,
  openElectionPool,
} from "../../src/election/advisory_lock.ts";
import { ElectionFilter, NOT_ELECTED } from "../../src/election/filter.ts";
import { UnavailableError } from "../../src/errors.ts";
import type { DecodedWrite } from "../../src/ingest.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { ConnectorMetrics } from "../../src/telemetry/metrics.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../helpers/assert.ts";
import { INTERNAL_LOCK_KEYS } from "../../src/storage/locks.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";

/** Short periods: a tick of 200 ms, the Prometheus check every second. */
const TIMINGS = {
  tickMs: 200,
  checkPeriodMs: 1_000,
  validityMs: 1_000,
  graceMs: 1_300,
  rejoinPauseMs: 600,
};
const PROMETHEUS_TIMEOUT_MS = 600;
/** Generous bound for anything that should happen within a few ticks. */
const SOON_MS = 15_000;

interface Contender {
  name: string;
  election: AdvisoryLockElection;
  metrics: ConnectorMetrics;
  /** Whether its "Prometheus" is writing (heard() every 100 ms). */
  alive: boolean;
}

/** Two or more elections on one database, with a Prometheus pump and an overlap detector. */
class Arena {
  readonly contenders: Contender[] = [];
  overlaps = 0;
  #timers: ReturnType<typeof setInterval>[] = [];

  constructor(readonly db: FreshDatabase) {
    this.#timers.push(setInterval(() => {
      for (const c of this.contenders) if (c.alive) c.election.heard();
    }, 100));
    this.#timers.push(setInterval(() => {
      if (this.contenders.filter((c) => c.election.isLeader()).length > 1) this.overlaps++;
    }, 5));
  }

  add(
    name: string,
    lockId: number,
    o: { uri?: string; alive?: boolean; timings?: Partial<AdvisoryLockElectionOptions> } = {},
  ): Contender {
    const metrics = new ConnectorMetrics();
    const election = new AdvisoryLockElection({
      lockId,
      prometheusTimeoutMs: PROMETHEUS_TIMEOUT_MS,
      openPool: (onclose) =>
        openElectionPool({
          uri: o.uri ?? this.db.uri,
          app: `election-test-${name}`,
          sslMode: "disable",
          connectTimeoutMs: 5_000,
        }, onclose),
      metrics,
      log: silentLogger,
      ...TIMINGS,
      ...o.timings,
    });
    const c = { name, election, metrics, alive: o.alive ?? true };
    this.contenders.push(c);
    election.start();
    return c;
  }

  leaders(): string[] {
    return this.contenders.filter((c) => c.election.isLeader()).map((c) => c.name);
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    for (const c of this.contenders) await c.election.stop();
  }
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = SOON_MS) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Backends of the test database holding advisory lock `id` (a bigint key). */
async function holders(db: FreshDatabase, id: number): Promise<string[]> {
  const rows = await db.sql<{ app: string }[]>`
    SELECT a.application_name AS app
    FROM pg_locks l JOIN pg_stat_activity a USING (pid)
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND (l.classid::int8 << 32 | l.objid::int8) = ${String(id)}::int8`;
  return rows.map((r) => r.app);
}

async function sessions(db: FreshDatabase, app: string): Promise<number> {
  const [{ n }] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = ${app}`;
  return n;
}

function decoded(samples: number): DecodedWrite {
  return {
    series: [{
      labels: [{ name: "__name__", value: "up" }],
      timestamps: Array.from({ length: samples }, (_, i) => 1_700_000_000_000 + i),
      values: new Float64Array(samples).fill(1),
    }],
    samples,
  };
}

Deno.test("AdvisoryLockElection: one connector leads, the other takes over when the holder's Prometheus falls silent", async () => {
  const db = await freshDatabase("election_silent");
  const arena = new Arena(db);
  try {
    const a = arena.add("a", 42);
    const b = arena.add("b", 42);
    await until("a leader", () => arena.leaders().length === 1);
    const [first, second] = arena.leaders()[0] === "a" ? [a, b] : [b, a];
    await until("the other follows", () => second.election.decision().kind === "follower");
    assertEquals(await holders(db, 42), [`election-test-${first.name}`]);
    assertEquals(first.metrics.electionsWon.get(), 1);
    assertEquals(second.metrics.electionsLost.get(), 1);

    first.alive = false;
    await until("the follower takes over", () => second.election.isLeader());
    assert(!first.election.isLeader());
    assertEquals(await holders(db, 42), [`election-test-${second.name}`]);
    assertEquals(first.metrics.electionsLost.get(), 1, "giving up counts as a loss");
    assertEquals(second.metrics.electionsWon.get(), 1);
    // It does not compete while its Prometheus is silent: no session at all.
    await until(
      "the silent one closes its session",
      async () => await sessions(db, `election-test-${first.name}`) === 0,
    );
    assertEquals(first.election.decision().kind, "unknown");

    // Its Prometheus writes again: it competes, and follows.
    first.alive = true;
    await until("the returning one follows", () => first.election.decision().kind === "follower");
    assert(second.election.isLeader());
    assertEquals(arena.overlaps, 0, "both claimed to lead at once");
  } finally {
    await arena.close();
    await db.drop();
  }
});

Deno.test("AdvisoryLockElection: a silent Prometheus never takes the lock, even when it is free", async () => {
  const db = await freshDatabase("election_never");
  const arena = new Arena(db);
  try {
    const quiet = arena.add("quiet", 7, { alive: false });
    // Several rounds pass; nothing is taken.
    await new Promise((r) => setTimeout(r, 5 * TIMINGS.tickMs));
    assertEquals(await holders(db, 7), []);
    assertEquals(quiet.election.decision().kind, "unknown");
    quiet.alive = true;
    await until("it leads once its Prometheus writes", () => quiet.election.isLeader());
    assertEquals(await holders(db, 7), ["election-test-quiet"]);
  } finally {
    await arena.close();
    await db.drop();
  }
});

Deno.test("AdvisoryLockElection: a terminated lock connection stops the holder at once; it competes again on a new one", async () => {
  const db = await freshDatabase("election_terminate");
  const arena = new Arena(db);
  try {
    const a = arena.add("a", -7);
    await until("a leads", () => a.election.isLeader());
    const b = arena.add("b", -7);
    await until("b follows", () => b.election.decision().kind === "follower");
    const d = a.election.decision();
    assert(d.kind === "leader");

    const [{ n }] = await db.sql<{ n: number }[]>`
      SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'election-test-a'`;
    assertEquals(n, 1);
    await until("a stops leading", () => !a.election.isLeader());
    assert(!a.election.stillLeader(d.epoch), "a write decided before the cut must be refused");

    await until("b takes over", () => b.election.isLeader());
    await until("a follows on a new connection", () => a.election.decision().kind === "follower");
    assertEquals(await holders(db, -7), ["election-test-b"]);
    assertEquals(await sessions(db, "election-test-a"), 1);
    assertEquals(a.metrics.electionsLost.get(), 1);
    assertEquals(arena.overlaps, 0, "both claimed to lead at once");
  } finally {
    await arena.close();
    await db.drop();
  }
});

/**
 * A TCP relay to PostgreSQL that can fail in two ways a holder cannot see
 * through its socket: a black hole (bytes are read and thrown away, both
 * connections stay open), or a cut upstream (the database side is closed,
 * so the backend ends and frees the lock, while the client side stays open
 * and silent).
 */
class Relay {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  blackHole = false;
  readonly #pairs = new Set<{ client: Deno.Conn; server: Deno.Conn; cut: boolean }>();
  readonly #serving: Promise<void>;

  constructor(readonly target: { hostname: string; port: number }) {
    this.#serving = this.#serve();
  }

  get port(): number {
    return (this.listener.addr as Deno.NetAddr).port;
  }

  /** Closes the database side of every connection; the clients hear nothing. */
  cutUpstream(): void {
    this.blackHole = true;
    for (const p of this.#pairs) {
      p.cut = true;
      closeQuietly(p.server);
    }
  }

  async #serve(): Promise<void> {
    for await (const client of this.listener) {
      let server: Deno.Conn;
      try {
        server = await Deno.connect(this.target);
      } catch {
        client.close();
        continue;
      }
      const pair = { client, server, cut: false };
      this.#pairs.add(pair);
      this.#pipe(pair, client, server);
      this.#pipe(pair, server, client);
    }
  }

  async #pipe(
    pair: { client: Deno.Conn; server: Deno.Conn; cut: boolean },
    from: Deno.Conn,
    to: Deno.Conn,
  ): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        if (this.blackHole) continue;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch {
      // A side closed.
    }
    if (from === pair.server && pair.cut) return; // leave the client hanging
    closeQuietly(pair.client);
    closeQuietly(pair.server);
    this.#pairs.delete(pair);
  }

  async close(): Promise<void> {
    this.listener.close();
    await this.#serving.catch(() => {});
    for (const p of this.#pairs) {
      closeQuietly(p.client);
      closeQuietly(p.server);
    }
    this.#pairs.clear();
  }
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // Already closed.
  }
}

/** Starts a relay to the test database; returns it and the relayed URI. */
function relayTo(db: FreshDatabase): { relay: Relay; uri: string } {
  const pg = new URL(db.uri);
  const relay = new Relay({ hostname: pg.hostname, port: Number(pg.port || 5432) });
  const relayed = new URL(db.uri);
  relayed.port = String(relay.port);
  return { relay, uri: relayed.toString() };
}

Deno.test("AdvisoryLockElection: a holder whose connection hangs stops writing before a peer can start", async () => {
  const db = await freshDatabase("election_hang");
  const { relay, uri } = relayTo(db);
  const arena = new Arena(db);
  try {
    const a = arena.add("a", 4242, { uri });
    await until("a leads", () => a.election.isLeader());
    const b = arena.add("b", 4242);
    await until("b follows", () => b.election.decision().kind === "follower");

    relay.blackHole = true;
    // a's checks go unanswered: it stops writing while its backend, still
    // connected, holds the lock.
    await until("a stops leading", () => !a.election.isLeader());
    assertEquals(a.election.decision().kind === "leader", false);
    // a then closes its side; the relay passes the close on, the backend
    // ends and frees the lock; b takes it and writes after its grace.
    await until("b takes over", () => b.election.isLeader());
    assertEquals(arena.overlaps, 0, "both claimed to lead at once");
    assertEquals(b.metrics.electionsWon.get(), 1);
  } finally {
    await arena.close();
    await relay.close();
    await db.drop();
  }
});

Deno.test("AdvisoryLockElection: a holder cut off without noticing stops writing before the peer that got the lock starts", async () => {
  const db = await freshDatabase("election_cut");
  const { relay, uri } = relayTo(db);
  const arena = new Arena(db);
  try {
    const a = arena.add("a", 4343, { uri });
    await until("a leads", () => a.election.isLeader());
    const b = arena.add("b", 4343);
    await until("b follows", () => b.election.decision().kind === "follower");

    // The backend of a ends and frees the lock; a hears nothing and still
    // believes it leads until its unanswered check gives up. b takes the
    // lock at its next try and must not write before a has stopped.
    relay.cutUpstream();
    await until(
      "b holds the lock",
      async () => (await holders(db, 4343)).includes("election-test-b"),
    );
    await until("b takes over", () => b.election.isLeader());
    assert(!a.election.isLeader());
    assertEquals(arena.overlaps, 0, "both claimed to lead at once");
  } finally {
    await arena.close();
    await relay.close();
    await db.drop();
  }
});

Deno.test("AdvisoryLockElection: keys beyond 32 bits and negative keys are distinct locks and stay confirmed", async () => {
  const db = await freshDatabase("election_keys");
  const arena = new Arena(db);
  const ids = [2, 2 ** 32 + 2, -(2 ** 32) + 2, -1, Number.MAX_SAFE_INTEGER];
  try {
    const cs = ids.map((id, i) => arena.add(`k${i}`, id));
    await until("each leads its own lock", () => cs.every((c) => c.election.isLeader()));
    // Several confirmation rounds: a key mapped wrongly to pg_locks would
    // look lost and end the leadership.
    await new Promise((r) => setTimeout(r, 6 * TIMINGS.tickMs));
    for (const [i, c] of cs.entries()) {
      assert(c.election.isLeader(), `key ${ids[i]} lost its leadership`);
      assertEquals(c.metrics.electionsLost.get(), 0, `key ${ids[i]}`);
      assertEquals(await holders(db, ids[i]), [`election-test-k${i}`]);
    }
  } finally {
    await arena.close();
    await db.drop();
  }
});

Deno.test("ElectionFilter: the leader stores, a follower drops with 2xx and counts, a new leader answers 503 until its grace ends", async () => {
  const db = await freshDatabase("election_filter");
  const arena = new Arena(db);
  try {
    const a = arena.add("a", 99, { alive: false });
    const b = arena.add("b", 99, { alive: false });
    const fa = new ElectionFilter(a.election, a.metrics, 5_000);
    const fb = new ElectionFilter(b.election, b.metrics, 5_000);

    // The first request makes a compete; it wins but is in its grace period.
    const err = await assertRejects(() => fa.apply(decoded(3)), UnavailableError, "retry");
    assertEquals(err.status, 503);
    a.alive = true;
    await until("a leads", () => a.election.isLeader());
    const kept = await fa.apply(decoded(3));
    assertEquals(kept.series.length, 1);
    kept.guard!();

    b.alive = true;
    const dropped = await fb.apply(decoded(5));
    assertEquals(dropped.series, []);
    assertEquals(dropped.guard, undefined);
    assertEquals(b.metrics.samplesDropped.get({ cluster: "", reason: NOT_ELECTED }), 5);
    assertEquals(a.metrics.samplesDropped.get({ cluster: "", reason: NOT_ELECTED }), 0);
    assert(b.metrics.registry.render().includes("promscale_leader_election_is_leader 0"));
    assert(a.metrics.registry.render().includes("promscale_leader_election_is_leader 1"));

    // A write decided while leading is refused once the leadership ended.
    const late = await fa.apply(decoded(1));
    await a.election.stop();
    let refused: unknown = null;
    try {
      late.guard!();
    } catch (e) {
      refused = e;
    }
    assert(refused instanceof UnavailableError, "guard must refuse after the lock is gone");
    await until("b takes over after a's stop", () => b.election.isLeader());
    assertEquals((await fb.apply(decoded(2))).series.length, 1);
    assertEquals(arena.overlaps, 0, "both claimed to lead at once");
  } finally {
    await arena.close();
    await db.drop();
  }
});

Deno.test("AdvisoryLockElection refuses the keys of the connector's own advisory locks", () => {
  const metrics = new ConnectorMetrics();
  assertEquals(INTERNAL_LOCK_KEYS.size, 4, "migrations, partitions, retention, compaction");
  for (const [key, what] of INTERNAL_LOCK_KEYS) {
    assertThrows(
      () =>
        new AdvisoryLockElection({
          lockId: key,
          prometheusTimeoutMs: 1_000,
          openPool: () => {
            throw new Error("no connection expected");
          },
          metrics,
          log: silentLogger,
        }),
      Error,
      `is the advisory lock of ${what}`,
    );
  }
});
