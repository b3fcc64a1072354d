/** The connector's pool sets its sessions up as db.ts says: name, statement timeout, no JIT. */
import { assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { openPool } from "../../src/storage/db.ts";

Deno.test("openPool() sessions carry the application name, the statement timeout and jit off", async () => {
  const db = await freshDatabase("pool_settings");
  const sql = openPool({
    uri: db.uri,
    max: 1,
    app: "promscale-pool-test",
    connectTimeoutMs: 5_000,
    statementTimeoutMs: 7_000,
    sslMode: "disable",
  });
  try {
    const [row] = await sql<{ app: string; timeout: string; jit: string }[]>`
      SELECT current_setting('application_name') AS app,
             current_setting('statement_timeout') AS timeout,
             current_setting('jit') AS jit`;
    assertEquals(row, { app: "promscale-pool-test", timeout: "7s", jit: "off" });
  } finally {
    await sql.end();
    await db.drop();
  }
});
