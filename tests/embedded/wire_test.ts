/**
 * The wire front of the embedded database (src/storage/embedded_wire.ts)
 * over a real PGlite in memory, with postgres.js as the connector uses it:
 * a transaction of one client is never interleaved with another client's
 * statements, COPY FROM STDIN works (PGlite itself exits on it when fed a
 * message at a time), a client gone or idle inside a transaction is rolled
 * back, and a user's SET does not outlive the user's connection.
 */
import { loadPglite, postgres } from "../../deps.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import {
  BackendTurns,
  copyFromStdin,
  scanOutput,
  serveWire,
  type WireOptions,
} from "../../src/storage/embedded_wire.ts";

Deno.test("copyFromStdin() recognises COPY … FROM STDIN and its format", () => {
  assertEquals(copyFromStdin("COPY t (a) FROM STDIN"), { binary: false });
  assertEquals(copyFromStdin("  copy x.t FROM stdin (FORMAT binary)"), { binary: true });
  assertEquals(copyFromStdin("COPY t FROM STDIN WITH (FORMAT csv)"), { binary: false });
  assertEquals(copyFromStdin("COPY t TO STDOUT"), null);
  assertEquals(copyFromStdin("SELECT 'COPY t FROM STDIN'"), null);
});

Deno.test("scanOutput() finds the last transaction status and drops the first CopyInResponse", () => {
  const msg = (type: string, body: number[]) => {
    const b = new Uint8Array(5 + body.length);
    b[0] = type.charCodeAt(0);
    new DataView(b.buffer).setInt32(1, 4 + body.length);
    b.set(body, 5);
    return b;
  };
  const out = new Uint8Array([
    ...msg("G", [0, 0, 0]),
    ...msg("C", [65, 0]),
    ...msg("Z", ["T".charCodeAt(0)]),
  ]);
  const s = scanOutput(out, true);
  assertEquals(s.status, "T");
  assertEquals([...s.out], [...msg("C", [65, 0]), ...msg("Z", ["T".charCodeAt(0)])]);
  assertEquals(scanOutput(out, false).out, out);
  assertEquals(scanOutput(new Uint8Array(), false).status, null);
});

Deno.test({
  name: "serveWire() gives each client the backend for whole transactions, over a real PGlite",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { PGlite } = await loadPglite();
    const db = await PGlite.create();
    const fatal: unknown[] = [];
    const opts: WireOptions = {
      idleInTransactionMs: 1_500,
      maxCopyBytes: 1 << 20,
      resetOnClose: true,
      onFatal: (err) => fatal.push(err),
    };
    const turns = new BackendTurns(db);
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const server = serveWire(listener, turns, opts);
    const uri = `postgres://postgres@${server.address}/postgres`;
    const pool = postgres(uri, { max: 4, onnotice: () => {} });
    try {
      await pool`CREATE TABLE t (a int PRIMARY KEY)`;

      // A transaction holds the backend: a query from another connection
      // waits for its end and sees its result, never its inside.
      const events: string[] = [];
      let other: Promise<number> | undefined;
      await pool.begin(async (tx) => {
        await tx`INSERT INTO t VALUES (1)`;
        other = pool<{ n: number }[]>`SELECT count(*)::int AS n FROM t`.then(([r]) => {
          events.push("other answered");
          return r.n;
        });
        await new Promise((r) => setTimeout(r, 300));
        const [{ n }] = await tx<{ n: number }[]>`SELECT count(*)::int AS n FROM t`;
        assertEquals(n, 1);
        events.push("transaction done");
      });
      assertEquals(await other, 1);
      assertEquals(events, ["transaction done", "other answered"]);

      // Many transactions from several connections at once: each counts its own rows.
      await Promise.all(Array.from({ length: 8 }, (_, k) =>
        pool.begin(async (tx) => {
          for (let i = 0; i < 5; i++) await tx`INSERT INTO t VALUES (${100 + k * 10 + i})`;
          const [{ n }] = await tx<{ n: number }[]>`
            SELECT count(*)::int AS n FROM t WHERE a BETWEEN ${100 + k * 10} AND ${109 + k * 10}`;
          assertEquals(n, 5);
        })));

      // An error inside a transaction rolls it back and leaves the backend usable.
      await pool.begin(async (tx) => {
        await tx`INSERT INTO t VALUES (2)`;
        await tx`INSERT INTO t VALUES (1)`; // duplicate key
      }).then(() => assert(false, "expected a unique violation"), (err) => {
        assertEquals((err as { code?: string }).code, "23505");
      });
      assertEquals((await pool`SELECT a FROM t WHERE a = 2`).length, 0);

      // COPY FROM STDIN, text and binary.
      const w = await pool`COPY t (a) FROM STDIN`.writable();
      await new Promise<void>((resolve, reject) => {
        w.on("error", reject);
        w.write("3\n4\n");
        w.end(resolve);
      });
      assertEquals((await pool`SELECT a FROM t WHERE a IN (3, 4)`).length, 2);

      // A client that disconnects inside a transaction is rolled back.
      const lone = postgres(uri, { max: 1, onnotice: () => {} });
      const reserved = await lone.reserve();
      await reserved`BEGIN`;
      await reserved`INSERT INTO t VALUES (5)`;
      await lone.end({ timeout: 0 });
      assertEquals((await pool`SELECT a FROM t WHERE a = 5`).length, 0);

      // One idle inside a transaction is rolled back after idleInTransactionMs.
      const idle = postgres(uri, { max: 1, onnotice: () => {} });
      const r2 = await idle.reserve();
      await r2`BEGIN`;
      await r2`INSERT INTO t VALUES (6)`;
      const [{ n: six }] = await pool<
        { n: number }[]
      >`SELECT count(*)::int AS n FROM t WHERE a = 6`;
      assertEquals(six, 0);
      r2.release();
      await idle.end({ timeout: 1 }).catch(() => {});

      // A user's SET ends with the user's connection.
      const [{ path: before }] = await pool<{ path: string }[]>`
        SELECT current_setting('search_path') AS path`;
      const user = postgres(uri, { max: 1, onnotice: () => {} });
      await user`SET search_path TO pg_catalog`;
      await user.end();
      const [{ path }] = await pool<
        { path: string }[]
      >`SELECT current_setting('search_path') AS path`;
      assertEquals(path, before);
      assert(before !== "pg_catalog");

      assertEquals(fatal, []);
    } finally {
      await pool.end({ timeout: 5 });
      await server.close();
      await db.close();
    }
  },
});
