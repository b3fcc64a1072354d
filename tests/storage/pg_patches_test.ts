/**
 * Guards src/storage/pg_patches.ts, the connector's reliances on
 * postgres.js internals: fails loudly when the pinned version changes or
 * when the internals the patches touch are gone, and checks the behaviour
 * each patch exists for against real PostgreSQL.
 */
import denoJson from "../../deno.json" with { type: "json" };
import type { WriteSeries } from "../../src/ingest.ts";
import { encodeCopy } from "../../src/storage/copy_format.ts";
import { copyIn, copyOut, POSTGRES_JS_CHECKED } from "../../src/storage/pg_patches.ts";
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";

const T0 = Date.UTC(2024, 2, 1);

function rows(from: number, count: number): Uint8Array {
  const series: WriteSeries[] = [];
  const ids: number[] = [];
  for (let i = 0; i < count; i++) {
    series.push({
      labels: [],
      timestamps: [T0 + (from + i) * 1000],
      values: new Float64Array([i]),
    });
    ids.push(1);
  }
  return encodeCopy(series, ids, count);
}

/** Rejects when `p` takes longer than `ms` (a hang is the failure these patches prevent). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no outcome within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("deno.json pins the postgres.js version the patches were checked against", () => {
  assertEquals(
    denoJson.imports.postgres,
    `npm:postgres@${POSTGRES_JS_CHECKED}`,
    "postgres.js changed: re-check src/storage/pg_patches.ts against the new version, " +
      "then update POSTGRES_JS_CHECKED",
  );
});

Deno.test("pg_patches: postgres.js internals and the behaviour they fix", async (t) => {
  const db = await freshDatabase("pg_patches");
  try {
    await db.sql`CREATE TABLE t (series_id bigint, time timestamptz, value float8,
                                 PRIMARY KEY (series_id, time))`;
    const conn = await db.sql.reserve();
    try {
      await t.step(
        "a COPY query still has `reject`, `writable` and a stream with autoDestroy",
        async () => {
          const q = conn`COPY t (series_id, time, value) FROM STDIN (FORMAT binary)` as unknown as {
            reject?: unknown;
            writable?: () => Promise<NodeJS.WritableStream>;
          };
          assertEquals(typeof q.reject, "function", "postgres.js query lost its internal reject()");
          assertEquals(typeof q.writable, "function", "postgres.js query lost writable()");
          const stream = await q.writable!();
          const state = (stream as unknown as { _writableState?: { autoDestroy?: unknown } })
            ._writableState;
          assertEquals(
            typeof state?.autoDestroy,
            "boolean",
            "COPY stream lost _writableState.autoDestroy",
          );
          const done = new Promise((resolve, reject) => {
            stream.once("finish", resolve);
            stream.once("error", reject);
          });
          stream.end(rows(0, 1));
          await within(done, 10_000, "plain COPY");
          await within(q as unknown as Promise<unknown>, 10_000, "plain COPY query");
        },
      );

      await t.step(
        "copyIn() rejects a COPY that fails after its last byte instead of hanging",
        async () => {
          let err: unknown;
          try {
            await within(
              copyIn(conn`COPY t (series_id, time, value) FROM STDIN (FORMAT binary)`, rows(0, 3)),
              10_000,
              "duplicate COPY",
            );
          } catch (e) {
            err = e;
          }
          assertEquals((err as { code?: string } | undefined)?.code, "23505", String(err));
        },
      );

      await t.step("COPYs one after another on one connection all commit", async () => {
        // The writer's pattern: a reserved connection or a transaction with
        // a COPY into samples, then one into ha_stage, without a pause.
        for (let k = 1; k <= 10; k++) {
          await within(
            copyIn(
              conn`COPY t (series_id, time, value) FROM STDIN (FORMAT binary)`,
              rows(k * 10, 5),
            ),
            10_000,
            `COPY ${k}`,
          );
        }
        await within(
          db.sql.begin(async (tx) => {
            await copyIn(
              tx`COPY t (series_id, time, value) FROM STDIN (FORMAT binary)`,
              rows(200, 5),
            );
            await copyIn(
              tx`COPY t (series_id, time, value) FROM STDIN (FORMAT binary)`,
              rows(300, 5),
            );
          }),
          10_000,
          "two COPYs in a transaction",
        );
      });
      const [{ n }] = await conn<{ n: number }[]>`SELECT count(*)::int AS n FROM t`;
      assert(n === 1 + 50 + 10, `rows ${n}`);

      await t.step(
        "copyOut() returns a COPY TO's whole body and the connection answers the next query",
        async () => {
          // Enough rows that the last one fills the stream's buffer (without
          // the patch, 1,800 rows inside a transaction were enough to hang).
          await conn`INSERT INTO t SELECT 2, to_timestamp(i), i FROM generate_series(1, 5000) i`;
          for (const count of [1, 1800, 5000]) {
            await conn`BEGIN`;
            const body = await within(
              copyOut(
                conn,
                `COPY (SELECT * FROM t WHERE series_id = 2 ORDER BY time LIMIT ${count})
                 TO STDOUT (FORMAT binary)`,
              ),
              10_000,
              `COPY TO of ${count} rows`,
            );
            // Header 19 bytes, per row 2 + 3 × (4 + 8), trailer 2.
            assertEquals(body.length, 19 + count * 38 + 2, `body of ${count} rows`);
            const [{ one }] = await within(
              conn<{ one: number }[]>`SELECT 1 AS one`,
              5_000,
              `query after a COPY TO of ${count} rows`,
            );
            assertEquals(one, 1);
            await conn`COMMIT`;
          }
        },
      );
    } finally {
      conn.release();
    }
  } finally {
    await db.drop();
  }
});
