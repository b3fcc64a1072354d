/**
 * The connector killed with SIGKILL in the middle of a load of writes, then
 * started again: every sample whose request was answered 2xx is in the
 * database (a 2xx is sent only after the commit), and nothing is there that
 * was never sent. The sender records what was acknowledged.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { type PayloadSeries, writeRequestBody } from "../helpers/payload.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll, startConnector } from "../helpers/procs.ts";

const WORKERS = 6;
const SERIES_PER_REQUEST = 40;

/** Request `k` of worker `w`: its own series, one sample each at a time unique to the request. */
function request(w: number, k: number): { body: Uint8Array<ArrayBuffer>; keys: string[] } {
  const t = 1_700_000_000_000 + k * 1000;
  const series: PayloadSeries[] = [];
  const keys: string[] = [];
  for (let i = 0; i < SERIES_PER_REQUEST; i++) {
    const value = w * 1e9 + k * 1000 + i;
    series.push({
      labels: { __name__: "kill9_load", worker: String(w), i: String(i) },
      samples: [{ value, timestamp: t }],
    });
    keys.push(`${w}/${i}/${t}/${value}`);
  }
  return { body: writeRequestBody(series) as Uint8Array<ArrayBuffer>, keys };
}

Deno.test({
  name: "connector killed with SIGKILL under load: every acknowledged sample is stored",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("fault_kill9");
    try {
      const port = freePort();
      let connector = await startConnector({
        dbUri: db.uri,
        port,
        args: ["--db.connections-max", "6"],
      });
      const acked = new Set<string>();
      const sent = new Set<string>();
      const outcomes = new Map<string, number>();
      let stop = false;
      const worker = async (w: number) => {
        for (let k = 0; !stop; k++) {
          const { body, keys } = request(w, k);
          for (const key of keys) sent.add(key);
          let outcome: string;
          try {
            const res = await fetch(`http://127.0.0.1:${port}/write`, {
              method: "POST",
              headers: {
                "content-encoding": "snappy",
                "content-type": "application/x-protobuf",
              },
              body,
              signal: AbortSignal.timeout(30_000),
            });
            await res.body?.cancel();
            outcome = String(res.status);
            if (res.ok) { for (const key of keys) acked.add(key); }
          } catch {
            outcome = "connection error";
            await new Promise((r) => setTimeout(r, 20));
          }
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        }
      };
      const load = Array.from({ length: WORKERS }, (_, w) => worker(w));
      // Kill once the load is well under way.
      while (acked.size < 200 * SERIES_PER_REQUEST) await new Promise((r) => setTimeout(r, 20));
      const ackedBeforeKill = acked.size;
      connector.proc.kill9();
      await connector.proc.wait();
      const errorsAtKill = outcomes.get("connection error") ?? 0;
      connector = await startConnector({
        dbUri: db.uri,
        port,
        args: ["--db.connections-max", "6"],
      });
      // More acknowledged writes after the restart, then stop the load.
      const target = acked.size + 100 * SERIES_PER_REQUEST;
      while (acked.size < target) await new Promise((r) => setTimeout(r, 20));
      stop = true;
      await Promise.all(load);
      await connector.stop();

      const rows = await db.sql<{ worker: string; i: string; t: string; value: number }[]>`
        SELECT worker, i, (extract(epoch FROM time) * 1000)::bigint::text AS t, value
        FROM prom_metric.kill9_load`;
      const stored = new Set(rows.map((r) => `${r.worker}/${r.i}/${r.t}/${r.value}`));
      const lost = [...acked].filter((k) => !stored.has(k));
      const strange = [...stored].filter((k) => !sent.has(k));
      console.log(
        `kill -9 under load: ${sent.size} samples sent, ${acked.size} acknowledged ` +
          `(${ackedBeforeKill} before the kill), ${stored.size} stored, ` +
          `${stored.size - acked.size} stored without acknowledgement; outcomes ${
            JSON.stringify(Object.fromEntries(outcomes))
          }`,
      );
      assert(
        errorsAtKill > 0 || (outcomes.get("connection error") ?? 0) > 0,
        "the kill hit no request",
      );
      assertEquals(lost.length, 0, `acknowledged but not stored: ${lost.slice(0, 5).join(", ")}`);
      assertEquals(strange.length, 0, `stored but never sent: ${strange.slice(0, 5).join(", ")}`);
      assertEquals(rows.length, stored.size, "a sample is stored twice");
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
