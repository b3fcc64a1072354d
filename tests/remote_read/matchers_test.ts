/**
 * matchersToSql(): Prometheus's selection semantics, run against a real
 * catalog in PostgreSQL.
 */
import type { Matcher, MatchType } from "../../src/remote_read/decode.ts";
import { matchersToSql } from "../../src/remote_read/matchers.ts";
import { BadRequestError } from "../../src/errors.ts";
import { migrate } from "../../src/storage/migrate.ts";
import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";

const SERIES: Record<string, Record<string, string>> = {
  up_a: { __name__: "up", job: "node", instance: "a" },
  up_b: { __name__: "up", job: "node", instance: "b", zone: "eu" },
  up_c: { __name__: "up", job: "api", instance: "c" },
  http_200: { __name__: "http_requests_total", job: "api", code: "200" },
  http_503: { __name__: "http_requests_total", job: "api", code: "503", zone: "us" },
};
const ALL = Object.keys(SERIES).sort();

/** Parses `name=value`-style matchers, e.g. `zone=~"eu|"` → {type "=~", name "zone", value "eu|"}. */
function m(text: string): Matcher {
  const match = /^([^=!~]+)(=~|!~|!=|=)"(.*)"$/s.exec(text);
  if (!match) throw new Error(`bad matcher ${text}`);
  return { name: match[1], type: match[2] as MatchType, value: match[3] };
}

/** [matchers, series selected]. */
const CASES: [string[], string[]][] = [
  [[], ALL],
  [['__name__="up"'], ["up_a", "up_b", "up_c"]],
  [['__name__="up"', 'zone=""'], ["up_a", "up_c"]],
  [['__name__="up"', 'zone!=""'], ["up_b"]],
  [['zone="eu"'], ["up_b"]],
  [['__name__="up"', 'zone!="eu"'], ["up_a", "up_c"]],
  [['zone!="eu"'], ["http_200", "http_503", "up_a", "up_c"]],
  [['__name__=~"up|http_.*"'], ALL],
  [['__name__=~"http_.*"', 'code=~"5.."'], ["http_503"]],
  [['job=~"no.*"'], ["up_a", "up_b"]],
  [['zone=~"eu|"'], ["http_200", "up_a", "up_b", "up_c"]],
  [['zone=~"e.*"'], ["up_b"]],
  [['zone=~".*"'], ALL],
  [['zone!~".+"'], ["http_200", "up_a", "up_c"]],
  [['zone!~""'], ["http_503", "up_b"]],
  [['job!~"node|api"'], []],
  [['instance!~"a"'], ["http_200", "http_503", "up_b", "up_c"]],
  [['__name__=""'], []],
  [['__name__!=""'], ALL],
  [['__name__!="up"'], ["http_200", "http_503"]],
  [['__name__!~"u.*"'], ["http_200", "http_503"]],
  [['job="node"', 'job="api"'], []],
  [['__name__=~"(?i)UP"'], ["up_a", "up_b", "up_c"]],
  [['__name__=~"UP"'], []],
  [['nope="x"'], []],
  [['nope!="x"'], ALL],
  [['a\'b"c="\'; DROP TABLE _prom_catalog.series; --"'], []],
];

Deno.test("matchersToSql() selects series as Prometheus does", async () => {
  const db = await freshDatabase("read_matchers");
  try {
    await migrate(db.sql);
    const names = Object.keys(SERIES);
    const rows = await db.sql<{ idx: number; series_id: string }[]>`
      SELECT idx, series_id FROM _prom_catalog.get_or_create_series(
        ${names.map((n) => JSON.stringify(SERIES[n]))}::text[]::jsonb[])`;
    const nameOf = new Map(rows.map((r) => [String(r.series_id), names[r.idx - 1]]));
    const wrong: string[] = [];
    for (const [texts, want] of CASES) {
      const cond = matchersToSql(texts.map(m));
      const got = await db.sql.unsafe<{ id: string }[]>(
        `SELECT s.id FROM _prom_catalog.series s WHERE ${cond.text}`,
        cond.params as never[],
      );
      const selected = got.map((r) => nameOf.get(String(r.id))!).sort();
      if (JSON.stringify(selected) !== JSON.stringify(want)) {
        wrong.push(`{${texts.join(", ")}}: want ${want}, got ${selected}`);
      }
    }
    assertEquals(wrong, []);
    const [{ n }] = await db.sql<
      { n: number }[]
    >`SELECT count(*)::int AS n FROM _prom_catalog.series`;
    assertEquals(n, names.length);
  } finally {
    await db.drop();
  }
});

Deno.test("matchersToSql() uses the indexed forms for equality and literal regexes", () => {
  assertEquals(matchersToSql([m('__name__="up"')]).text, "s.metric_name = $1::text");
  assertEquals(matchersToSql([m('job="a"')], 4), {
    text: "s.labels @> $4::text::jsonb",
    params: ['{"job":"a"}'],
  });
  assertEquals(matchersToSql([m('__name__=~"a|b"')]), {
    text: "s.metric_name = ANY($1::text[])",
    params: [["a", "b"]],
  });
});

Deno.test("matchersToSql() refuses a regex it cannot translate, naming the label", () => {
  const err = assertThrows(
    () => matchersToSql([m('job=~"\\pL"')]),
    BadRequestError,
    'Cannot serve read request: unsupported regex "\\pL"',
  );
  assertEquals(err.status, 400);
  assertEquals(err.message.endsWith('(matcher on label "job")'), true);
});
