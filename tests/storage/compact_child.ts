/**
 * A compactor in its own process, for the kill -9 tests: one series per
 * batch. Arguments: the database URI, where to hold (a batch number N:
 * inside batch N's transaction, before COMMIT; or "drop": inside the
 * partition's final transaction, after the late rows were merged, before
 * the DROP), and optionally a batch number L and a JSON list of late rows
 * `[series_id, ms, value]`: in batch L, before its COMMIT, another
 * connection inserts them into the partition as the writer does (`ON
 * CONFLICT DO NOTHING`: a write arriving while the partition is compacted). It prints "batch N" after each batch and
 * "holding" when it holds, then waits until killed.
 */
import { postgres } from "../../deps.ts";
import { Compactor } from "../../src/storage/compactor.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

const [uri, hold, lateAt, lateRows] = Deno.args;
const sql = postgres(uri, { max: 3, onnotice: () => {} });
const holdForever = async () => {
  console.log("holding");
  await new Promise(() => {}); // until SIGKILL
};
let n = 0;
const c = new Compactor({
  sql,
  log: silentLogger,
  delayMs: 0,
  batchSeries: 1,
  beforeCommit: async () => {
    n++;
    if (lateAt && n === Number(lateAt)) {
      for (const [sid, ms, value] of JSON.parse(lateRows) as [number, number, number][]) {
        await sql`INSERT INTO _prom_data.samples (series_id, time, value)
                  VALUES (${sid}, ${new Date(ms).toISOString()}, ${value})
                  ON CONFLICT DO NOTHING`;
      }
      console.log("late rows stored");
    }
    if (hold === String(n)) await holdForever();
  },
  beforeFinish: async (step) => {
    if (hold === step) await holdForever();
  },
  onBatch: () => console.log(`batch ${n}`),
});
await c.runOnce();
console.log("done");
await sql.end();
