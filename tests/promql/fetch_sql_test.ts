/**
 * PromQL's own fetch SQL (src/promql/fetch_sql.ts) reads exactly what
 * remote read's querier reads: the same series, times and value bits
 * (staleness markers, NaN payloads, -0), from rows and compressed windows
 * and native histograms, whatever the number of parts the series are split
 * into; and it stops at the same sample limit.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { fetchSeries, timesFromBytes, TooManySamples } from "../../src/promql/fetch_sql.ts";
import { runQueries } from "../../src/remote_read/querier.ts";
import type { ReadQuery } from "../../src/remote_read/decode.ts";
import type { ResultSeries } from "../../src/remote_read/encode.ts";
import { Gate } from "../../src/storage/db.ts";
import { DataModelWriter, type ModelSeries } from "../../src/storage/data_model_writer.ts";
import { SeriesCache } from "../../src/storage/series_cache.ts";
import { PgWriter } from "../../src/storage/writer.ts";
import { parseWriteRequestV2 } from "../../src/remote_write/decode_v2.ts";
import {
  bitsOf,
  compact,
  forms,
  setup,
  store,
  type TestSeries,
} from "../storage/compress_helpers.ts";
import { floatHistogram, intHistogram, v2Request } from "../data_model/build.ts";

const STALE = 0x7ff0000000000002n;
const PG_EPOCH_US = 946_684_800_000_000n;

Deno.test("timesFromBytes() is floor(µs / 1000) exactly, before 1970, 2000 and up to 9999", () => {
  const us = [
    -62135596800000000n, // 0001-01-01
    -62135596799999999n,
    -1n,
    -999n,
    -1000n,
    -1001n,
    0n,
    1n,
    999n,
    1000n,
    946684799999999n, // 1999-12-31T23:59:59.999999
    1700000100000000n,
    1700000100000999n,
    253402300799999999n, // 9999-12-31T23:59:59.999999
  ];
  for (let r = 0; r < 2000; r++) {
    us.push(BigInt(Math.floor((Math.random() - 0.4) * 2 ** 53)) * 37n);
  }
  const b = new Uint8Array(us.length * 8);
  const dv = new DataView(b.buffer);
  us.forEach((u, i) => dv.setBigInt64(i * 8, u - PG_EPOCH_US));
  const got = timesFromBytes(b);
  us.forEach((u, i) => {
    // floor division of a BigInt
    const q = u / 1000n - (u % 1000n < 0n ? 1n : 0n);
    assertEquals(got[i], Number(q), `µs ${u}`);
  });
});

/** The answer of one query, comparable: series by labels with times and value bits. */
function canon(list: ResultSeries[]): string[] {
  return list.map((s) => {
    const bits = Array.from(
      { length: s.valuesBE.length / 8 },
      (_, i) =>
        new DataView(s.valuesBE.buffer, s.valuesBE.byteOffset).getBigUint64(i * 8).toString(16),
    );
    return JSON.stringify([
      s.labels,
      Array.from(s.timestamps),
      bits,
      (s.histograms ?? []).map((h) => [h.timestamp, JSON.stringify(h.histogram)]),
    ]);
  }).sort();
}

Deno.test("fetchSeries() reads what remote read reads, in 1 to 3 parts, and stops at the limit", async () => {
  const db = await freshDatabase("promql_fetch_sql");
  try {
    await setup(db.sql);
    const hostile = [
      STALE,
      0x7ff8000000000000n,
      0xfff8000000000001n,
      bitsOf(-0),
      bitsOf(Infinity),
      bitsOf(-Infinity),
      bitsOf(1.5),
      bitsOf(Math.PI),
    ];
    const series: TestSeries[] = [];
    // Times before 1970 and 2000 (negative ms, negative µs since 2000),
    // odd milliseconds, and recent ones (not compacted).
    const starts = [Date.UTC(1969, 11, 31, 23), Date.UTC(1999, 11, 31, 23), Date.now() - 3_600_000];
    for (let s = 0; s < 9; s++) {
      const t0 = starts[s % 3];
      const times = Array.from({ length: 40 + s }, (_, i) => t0 + i * 15_000 + (i % 3) * 7);
      series.push({
        labels: { __name__: s % 2 ? "fs_a" : "fs_b", job: `j${s % 3}`, instance: `i${s}` },
        times,
        bits: times.map((_, i) => i % 5 === 4 ? hostile[(s + i) % hostile.length] : bitsOf(i * s)),
      });
    }
    await store(db.sql, series);
    await compact(db.sql);
    // A late row in a compacted window and one after it: both forms in one series.
    await store(db.sql, [{
      labels: series[0].labels,
      times: [starts[0] + 7_000, starts[0] + 3_000_000],
      bits: [bitsOf(42), STALE],
    }]);
    const f = await forms(db.sql);
    assert(f.windows > 0 && f.rows > 0, `both forms: ${JSON.stringify(f)}`);

    // Native histograms: their series' presence rows are not float samples.
    const writer = new PgWriter(db.sql, new Gate(4, 64, 10_000), new SeriesCache(1000));
    const T = Date.now() - 600_000;
    const d = parseWriteRequestV2(
      v2Request([
        {
          labels: { __name__: "fs_h", job: "j0" },
          histograms: [intHistogram(T), floatHistogram(T + 15_000)],
        },
        { labels: { __name__: "fs_h", job: "j1" }, histograms: [floatHistogram(T)] },
      ]),
      { maxDecodedBytes: 1 << 20 },
    );
    const ms = d.series as ModelSeries[];
    await writer.write(ms.filter((s) => s.timestamps.length));
    await new DataModelWriter().write(
      db.sql,
      ms,
      ms.map((s) => writer.cache.get(s.labels)!),
      ms.length,
      d.metadata,
      true,
    );

    const all = (name: string, startMs: number, endMs: number): ReadQuery => ({
      matchers: [{ type: "=~", name: "__name__", value: name }] as never,
      startMs,
      endMs,
    });
    const queries: ReadQuery[] = [
      all("fs_.*", starts[0] - 60_000, Date.now()),
      all("fs_a", starts[0] + 100_000, starts[1] + 200_000),
      { ...all("fs_b", starts[2] + 30_007, starts[2] + 300_000) },
      {
        matchers: [{ type: "!=", name: "job", value: "j1" }, {
          type: "=",
          name: "__name__",
          value: "fs_h",
        }] as never,
        startMs: T,
        endMs: T + 15_000,
      },
      all("fs_none", 0, Date.now()),
      all("fs_a", 10, 5),
    ];
    const expected = await runQueries(queries, { sql: db.sql, maxSamples: 1e9 });
    assert(expected.results[0].length === 11, `${expected.results[0].length} series`);
    assert(expected.results[3].length === 1 && expected.results[3][0].histograms?.length === 2);
    for (const parallel of [1, 2, 3]) {
      const got = await fetchSeries(queries, { sql: db.sql, maxSamples: 1e9, parallel });
      assertEquals(got.length, queries.length);
      got.forEach((list, q) =>
        assertEquals(canon(list), canon(expected.results[q]), `parallel ${parallel}, query ${q}`)
      );
      // The limit: every selected sample may be loaded, not one more.
      const gate = new Gate(2, 64, 10_000);
      const ok = await fetchSeries(queries, {
        sql: db.sql,
        gate,
        maxSamples: expected.samples,
        parallel,
      });
      assertEquals(ok.map(canon), expected.results.map(canon));
      let err: unknown;
      try {
        await fetchSeries(queries, {
          sql: db.sql,
          gate,
          maxSamples: expected.samples - 1,
          parallel,
        });
      } catch (e) {
        err = e;
      }
      assert(err instanceof TooManySamples, `parallel ${parallel}: ${err}`);
      assertEquals(gate.active, 0);
    }
  } finally {
    await db.drop();
  }
});
