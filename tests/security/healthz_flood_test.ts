/**
 * /healthz cannot starve writes: 1,500 unauthenticated health checks kept
 * in flight at once neither take the write slots (--web.max-in-flight-requests)
 * nor run a query each. Every authenticated write made meanwhile is stored
 * (204), and the database sees about one probe a second.
 *
 * Prints the write latency before and during the flood.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { percentile as pct, timedWrite } from "../helpers/latency.ts";
import { killAll, startConnector } from "../helpers/procs.ts";

const TOKEN = "healthz-flood-token";
const FLOOD = 1_500;
const FLOOD_MS = 2_000;

Deno.test({
  name: "1,500 concurrent /healthz calls do not take a write's slot",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("sec_healthz_flood");
    try {
      const c = await startConnector({
        dbUri: db.uri,
        args: ["--web.auth.bearer-token", TOKEN, "--db.connections-max", "3"],
      });
      let n = 0;
      const before: number[] = [];
      for (let i = 0; i < 10; i++) {
        const r = await timedWrite(c.url, n++, { authorization: `Bearer ${TOKEN}` });
        assertEquals(r.status, 204);
        before.push(r.ms);
      }
      const [{ calls: callsBefore }] = await db.sql<{ calls: string }[]>`
        SELECT coalesce(sum(xact_commit), 0) AS calls FROM pg_stat_database
        WHERE datname = current_database()`;

      const statuses = new Map<number | string, number>();
      /** Keeps FLOOD health checkers going, each pausing `pauseMs` between calls, while writing. */
      const underFlood = async (pauseMs: number) => {
        let flooding = true;
        const flood = Array.from({ length: FLOOD }, async () => {
          while (flooding) {
            try {
              const res = await fetch(`${c.url}/healthz`, { signal: AbortSignal.timeout(20_000) });
              await res.body?.cancel();
              statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
            } catch (err) {
              const k = (err as Error).name;
              statuses.set(k, (statuses.get(k) ?? 0) + 1);
              await new Promise((r) => setTimeout(r, 50));
            }
            if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs * (0.5 + Math.random())));
          }
        });
        // Let the flood build up, then write while it goes on.
        await new Promise((r) => setTimeout(r, 500));
        const during: { status: number; ms: number }[] = [];
        const until = performance.now() + FLOOD_MS;
        while (performance.now() < until) {
          during.push(await timedWrite(c.url, n++, { authorization: `Bearer ${TOKEN}` }));
        }
        flooding = false;
        await Promise.all(flood);
        return during;
      };
      // Closed loop: every checker calls again as soon as it is answered
      // (as many calls as the machine can serve), then paced at one call a
      // second per checker (about 1,500 a second).
      const closed = await underFlood(0);
      const paced = await underFlood(1_000);
      const during = [...closed, ...paced];
      const [{ calls: callsAfter }] = await db.sql<{ calls: string }[]>`
        SELECT coalesce(sum(xact_commit), 0) AS calls FROM pg_stat_database
        WHERE datname = current_database()`;
      const healthCalls = [...statuses.values()].reduce((a, b) => a + b, 0);
      const lat = (ds: { ms: number }[]) => {
        const ms = ds.map((d) => d.ms);
        return `p50 ${pct(ms, 0.5).toFixed(1)} ms p99 ${
          pct(ms, 0.99).toFixed(1)
        } ms (${ms.length} writes)`;
      };
      console.log(
        `healthz flood: ${healthCalls} /healthz answers (${
          JSON.stringify(Object.fromEntries(statuses))
        }) from ${FLOOD} concurrent clients; write latency before: ${
          lat(before.map((ms) => ({ ms })))
        }; during the closed-loop flood: ${lat(closed)}; during the paced flood: ${lat(paced)}; ` +
          `database transactions meanwhile: ${Number(callsAfter) - Number(callsBefore)}`,
      );
      assertEquals(
        during.filter((d) => d.status !== 204).map((d) => d.status),
        [],
        "writes refused during the /healthz flood",
      );
      assert(during.length >= 3, `only ${during.length} writes in ${FLOOD_MS} ms`);
      assert(healthCalls >= FLOOD, `only ${healthCalls} health checks answered`);
      // The health checks ran no query each: the transactions are the
      // writes' and about one probe a second (pg_stat_database lags a little).
      assert(
        Number(callsAfter) - Number(callsBefore) < healthCalls / 2,
        `${Number(callsAfter) - Number(callsBefore)} transactions for ${healthCalls} health checks`,
      );
      assertEquals(statuses.get(200), healthCalls, "every health check answered 200");
    } finally {
      await killAll();
      await db.drop();
    }
  },
});

Deno.test("the health probe: one outstanding at a time, 503 when failed or stale", async () => {
  const { HealthProbe } = await import("../../src/health.ts");
  let mode: "ok" | "fail" | "hang" = "ok";
  let started = 0;
  const probe = new HealthProbe({
    probe: () => {
      started++;
      if (mode === "ok") return Promise.resolve();
      if (mode === "fail") return Promise.reject(new Error("connection refused\nmore"));
      return new Promise(() => {}); // a database that never answers
    },
    intervalMs: 20,
    timeoutMs: 50,
    staleMs: 150,
  });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  try {
    await probe.start();
    assertEquals(probe.state(), { ok: true, reason: "" });
    mode = "fail";
    await sleep(100);
    assertEquals(probe.state(), { ok: false, reason: "database unavailable: connection refused" });
    mode = "ok";
    await sleep(100);
    assert(probe.state().ok);
    mode = "hang";
    const before = started;
    await sleep(400);
    // The first hung probe times out (failed), and no other one is started
    // while it hangs.
    assertEquals(started - before, 1);
    assertEquals(probe.state().ok, false);
  } finally {
    await probe.stop();
  }
});
