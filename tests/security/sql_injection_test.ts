/**
 * SQL built from metric and label names is never injectable: names and
 * values with quotes, semicolons, backslashes, dollar quotes, format()
 * specifiers, SQL comments and unicode are stored as data and read back
 * unchanged through the prom_metric views, whose names are the metric names
 * themselves (a safe stand-in when a name is longer than PostgreSQL's 63
 * bytes). A canary table survives.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { type PayloadSeries, writeRequestBody } from "../helpers/payload.ts";
import { startConnector } from "../../src/app.ts";
import { parseConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

const METRICS = [
  `evil"; DROP TABLE _prom_catalog.series; --`,
  `it's`,
  `semi;colon`,
  `back\\slash\\`,
  `dollar$$quote$$`,
  `$tag$x$tag$`,
  `$1`,
  `%s %I %L %%`,
  `ünïcödé_指標_🙂`,
  `prom_metric"."other`,
  ` leading and trailing `,
  `) AS x; SELECT pg_sleep(30); --`,
  `/* comment */ up`,
  `UPPER_lower`,
  `${"long_name_with_'quote'_and_\"dq\"_".repeat(4)}end`,
];

const LABELS: Record<string, string> = {
  job: `'; DROP TABLE canary; --`,
  [`"quoted"`]: `"`,
  [`it's`]: `back\\slash`,
  [`a;b`]: `$$ $1 %s %I`,
  [`back\\`]: `line\nbreak\ttab`,
  [`$$`]: `{"json": [1, 2]}`,
  [`%I`]: `ключ-значение 🙂`,
  time: `not the time column`,
  value: `not the value column`,
  labels: `not the labels column`,
  series_id: `not the id column`,
  [`ключ`]: `\u0001\u007f control`,
  [`${"k'".repeat(40)}`]: `long label name`,
  [`-- comment`]: `*/ /*`,
};

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

Deno.test({
  name: "metric and label names and values round-trip as data through prom_metric views",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("sec_sql_injection");
    const c = await startConnector(
      parseConfig(
        ["--db.uri", db.uri, "--web.listen-address", "127.0.0.1:0", "--db.connections-max", "3"],
        {},
        () => null,
      ),
      silentLogger,
    );
    try {
      await db.sql`CREATE TABLE public.canary (x int)`;
      await db.sql`INSERT INTO public.canary VALUES (42)`;
      const series: PayloadSeries[] = METRICS.map((name, i) => ({
        labels: { __name__: name, ...LABELS },
        samples: [{ value: i + 0.5, timestamp: 1_700_000_000_000 + i }],
      }));
      // One series per request, then all again in one request (no new rows).
      for (const s of [...series.map((s) => [s]), series]) {
        const res = await fetch(`${c.url}/write`, {
          method: "POST",
          headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
          body: writeRequestBody(s) as Uint8Array<ArrayBuffer>,
        });
        assertEquals(res.status, 204, await res.text());
      }

      const catalog = await db.sql<{ metric_name: string; view_name: string }[]>`
        SELECT metric_name, view_name FROM _prom_catalog.metric`;
      const viewOf = new Map(catalog.map((r) => [r.metric_name, r.view_name]));
      const views = new Set(
        (await db.sql<{ table_name: string }[]>`
          SELECT table_name FROM information_schema.views WHERE table_schema = 'prom_metric'`)
          .map((r) => r.table_name),
      );
      for (const [i, name] of METRICS.entries()) {
        const view = viewOf.get(name);
        assert(view !== undefined, `no catalog entry for metric ${JSON.stringify(name)}`);
        assert(views.has(view), `no view ${JSON.stringify(view)}`);
        if (new TextEncoder().encode(name).length <= 63) {
          assertEquals(view, name, "the view is named by the metric");
        }
        const rows = await db.sql.unsafe(
          `SELECT * FROM prom_metric.${quoteIdent(view)}`,
        ) as unknown as Record<string, unknown>[];
        assertEquals(rows.length, 1, `rows of ${JSON.stringify(name)}`);
        const row = rows[0];
        assertEquals(row.value, i + 0.5);
        assertEquals((row.time as Date).getTime(), 1_700_000_000_000 + i);
        assertEquals(row.labels, LABELS, `labels of ${JSON.stringify(name)}`);
        // One column per label key, named by the key where it is a legal,
        // free column name.
        for (const [k, v] of Object.entries(LABELS)) {
          const reserved = ["time", "value", "labels", "series_id"].includes(k);
          if (!reserved && new TextEncoder().encode(k).length <= 63) {
            assertEquals(row[k], v, `column ${JSON.stringify(k)} of ${JSON.stringify(name)}`);
          }
        }
        const values = Object.values(row).filter((x) => typeof x === "string");
        for (const v of Object.values(LABELS)) {
          assert(values.includes(v), `no column holds ${JSON.stringify(v)}`);
        }
      }
      const [{ n }] = await db.sql<{ n: string }[]>`SELECT count(*) AS n FROM public.canary`;
      assertEquals(Number(n), 1);
      const [{ s }] = await db.sql<{ s: string }[]>`SELECT count(*) AS s FROM _prom_catalog.series`;
      assertEquals(Number(s), METRICS.length);
    } finally {
      await c.stop();
      await db.drop();
    }
  },
});
