/**
 * A compactor in its own process, for the kill -9 test: one series per
 * batch; in batch `--hold` it prints "holding" and waits inside the
 * transaction (before COMMIT) until killed. Other batches print "batch N".
 */
import { postgres } from "../../deps.ts";
import { Compactor } from "../../src/storage/compactor.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

const [uri, hold] = [Deno.args[0], Number(Deno.args[1])];
const sql = postgres(uri, { max: 2, onnotice: () => {} });
let n = 0;
const c = new Compactor({
  sql,
  log: silentLogger,
  delayMs: 0,
  batchSeries: 1,
  beforeCommit: async () => {
    if (++n === hold) {
      console.log("holding");
      await new Promise(() => {}); // until SIGKILL
    }
  },
  onBatch: () => console.log(`batch ${n}`),
});
await c.runOnce();
console.log("done");
await sql.end();
