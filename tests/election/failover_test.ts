/**
 * Legacy election with real connector processes (`deno run -A main.ts`),
 * same lock id, one database, each fed by its own sender posting a probe
 * every 200 ms (what one Prometheus per connector would do). Three
 * hand-overs in a row:
 *
 * 1. the holder's sender stops → the other takes over within the
 *    Prometheus timeout + the 10 s check period (+ tick, grace, slack);
 * 2. the holder's lock connection is cut with pg_terminate_backend →
 *    the holder stops writing at once, the other takes over;
 * 3. the holder is killed with -9 → its session ends, the other takes over.
 *
 * Both senders use the same clock-based slots (200 ms) and a `sender`
 * label, so two connectors writing at once would show as a slot stored
 * from both senders, or as the stored sender flipping back and forth.
 * The check: no slot from both, and the sender of the stored slots, in
 * time order, changes exactly once per hand-over.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import { killAll, type Service, startConnector } from "../helpers/procs.ts";
import { writeRequestBody } from "../helpers/payload.ts";

const LOCK_ID = "5151";
const PROMETHEUS_TIMEOUT_S = 2;
/** The documented period of the holder's Prometheus check. */
const CHECK_PERIOD_S = 10;
/** Tick (1 s) + grace (3.5 s) + slack for a loaded machine. */
const TAKEOVER_SLACK_S = 1 + 3.5 + 8;
const SLOT_MS = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Posts a probe sample to one connector every slot until stopped. */
class Sender {
  running = true;
  readonly statuses = new Map<number | string, number>();
  readonly #done: Promise<void>;

  constructor(readonly name: string, readonly url: string) {
    this.#done = this.#loop();
  }

  async #loop(): Promise<void> {
    let last = 0;
    while (this.running) {
      const slot = Math.floor(Date.now() / SLOT_MS) * SLOT_MS;
      if (slot !== last) {
        last = slot;
        const body = writeRequestBody([{
          labels: { __name__: "election_probe", sender: this.name },
          samples: [{ value: 1, timestamp: slot }],
        }]);
        let status: number | string;
        try {
          const res = await fetch(`${this.url}/write`, {
            method: "POST",
            headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
            body: body as Uint8Array<ArrayBuffer>,
            signal: AbortSignal.timeout(2_000),
          });
          await res.body?.cancel();
          status = res.status;
        } catch {
          status = "error";
        }
        this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
      }
      await sleep(SLOT_MS - (Date.now() % SLOT_MS) + 5);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.#done;
  }
}

async function metric(c: Service, name: string): Promise<number> {
  try {
    const text = await (await fetch(`${c.url}/metrics`, { signal: AbortSignal.timeout(2_000) }))
      .text();
    let sum = 0;
    for (const line of text.split("\n")) {
      if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
        sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
    }
    return sum;
  } catch {
    return NaN;
  }
}

const isLeader = async (c: Service) => await metric(c, "promscale_leader_election_is_leader") === 1;

async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting: ${what}`);
    await sleep(100);
  }
}

/** Samples stored from `sender` with a timestamp after `sinceMs`. */
async function storedFrom(db: FreshDatabase, sender: string, sinceMs = 0): Promise<number> {
  const [{ present }] = await db.sql<{ present: boolean }[]>`
    SELECT to_regclass('prom_metric.election_probe') IS NOT NULL AS present`;
  if (!present) return 0;
  const since = new Date(sinceMs);
  const [{ n }] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM prom_metric.election_probe
    WHERE labels->>'sender' = ${sender} AND time > ${since}`;
  return n;
}

Deno.test({
  name:
    "Legacy election: sender stopped, lock connection terminated, holder killed — one writer at a time",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const db = await freshDatabase("election_failover");
    const senders: Sender[] = [];
    try {
      const args = [
        "--leader-election-pg-advisory-lock-id",
        LOCK_ID,
        "--leader-election-pg-advisory-lock-prometheus-timeout",
        `${PROMETHEUS_TIMEOUT_S}s`,
        "--db.connections-max",
        "3",
      ];
      const [ca, cb] = await Promise.all([
        startConnector({ dbUri: db.uri, args }),
        startConnector({ dbUri: db.uri, args }),
      ]);
      const conn: Record<string, Service> = { a: ca, b: cb };
      for (const c of [ca, cb]) {
        assert(
          /level=warn .*deprecated.*--metrics\.high-availability/.test(c.proc.output()),
          `no deprecation warning at start:\n${c.proc.output()}`,
        );
      }
      const sender: Record<string, Sender> = {};
      for (const name of ["a", "b"]) {
        sender[name] = new Sender(name, conn[name].url);
        senders.push(sender[name]);
      }
      const leaderName = async (): Promise<string | null> => {
        const [la, lb] = await Promise.all([isLeader(ca), isLeader(cb)]);
        assert(!(la && lb), "both connectors report leading");
        return la ? "a" : lb ? "b" : null;
      };
      const other = (n: string) => (n === "a" ? "b" : "a");
      const handovers: string[] = [];
      /** Waits for samples from `name`'s sender stored after now. */
      const newSamples = async (name: string) => {
        const since = Date.now();
        await until(
          `samples from sender ${name} after the hand-over`,
          async () => await storedFrom(db, name, since) >= 5,
          15_000,
        );
      };

      await until("a leader", async () => (await leaderName()) !== null, 30_000);
      let holder = (await leaderName())!;
      handovers.push(holder);
      await newSamples(holder);

      // 1. The holder's "Prometheus" stops writing.
      await sender[holder].stop();
      const takeover1Ms = (PROMETHEUS_TIMEOUT_S + CHECK_PERIOD_S + TAKEOVER_SLACK_S) * 1_000;
      await until(
        `connector ${other(holder)} takes over after ${holder}'s sender stopped`,
        async () => await isLeader(conn[other(holder)]),
        takeover1Ms,
      );
      holder = other(holder);
      handovers.push(holder);
      await newSamples(holder);
      // Its sender resumes: that connector competes again and follows.
      sender[other(holder)] = new Sender(other(holder), conn[other(holder)].url);
      senders.push(sender[other(holder)]);
      await sleep(2_000);
      assertEquals(await leaderName(), holder);

      // 2. Cut the holder's lock connection. The holder waits before
      // competing again, so the other gets the lock; should the holder win
      // it back anyway, cut again.
      for (let attempt = 1;; attempt++) {
        const [{ n }] = await db.sql<{ n: number }[]>`
          SELECT count(pg_terminate_backend(l.pid))::int AS n
          FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
            AND a.datname = current_database() AND a.application_name = 'promscale-election'
            AND l.objid = ${LOCK_ID}::oid AND l.classid = 0`;
        assertEquals(n, 1, "exactly one election session holds the lock");
        const next = other(holder);
        const moved = await until(
          `connector ${next} takes over after the cut`,
          async () => await isLeader(conn[next]),
          15_000,
        ).then(() => true, () => false);
        if (moved) break;
        assert(attempt < 3, `connector ${next} never took over after ${attempt} cuts`);
      }
      holder = other(holder);
      handovers.push(holder);
      await newSamples(holder);

      // 3. Kill -9 the holder: its session ends with the process.
      conn[holder].proc.kill9();
      await conn[holder].proc.wait();
      await until(
        `connector ${other(holder)} takes over after ${holder} was killed`,
        async () => await isLeader(conn[other(holder)]),
        (1 + TAKEOVER_SLACK_S + 5) * 1_000,
      );
      holder = other(holder);
      handovers.push(holder);
      await newSamples(holder);
      for (const s of senders) await s.stop();

      // The stored slots: never from both senders, one change per hand-over.
      const both = await db.sql<{ time: Date }[]>`
        SELECT time FROM prom_metric.election_probe
        GROUP BY time HAVING count(DISTINCT labels->>'sender') > 1`;
      assertEquals(both.map((r) => r.time.toISOString()), [], "slots written from both senders");
      const rows = await db.sql<{ sender: string }[]>`
        SELECT labels->>'sender' AS sender FROM prom_metric.election_probe ORDER BY time`;
      const runs: string[] = [];
      for (const r of rows) if (runs.at(-1) !== r.sender) runs.push(r.sender);
      assertEquals(runs, handovers, "stored writers in time order");
      const dropped = await metric(conn[holder], "promscale_ingest_samples_dropped_total");
      assert(dropped > 0, "the survivor dropped samples while following");
      assertEquals(await metric(conn[holder], "promscale_leader_election_won_total"), 2);
    } catch (err) {
      for (const s of senders) console.error(`sender ${s.name}:`, Object.fromEntries(s.statuses));
      throw err;
    } finally {
      for (const s of senders) await s.stop();
      await killAll();
      await db.drop();
    }
  },
});
