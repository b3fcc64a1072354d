/**
 * Compressed storage keeps every sample bit for bit: hostile values and
 * times read the same through the `prom_metric` views before and after
 * compaction, and the encoder picks the compact forms for ordinary data;
 * the TypeScript decoder gives back what the encoder took, for every shape.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { decodeWindows, type EncodedWindow, encodeWindow } from "../../src/storage/windows.ts";
import { MIGRATIONS } from "../../src/storage/migrations/schema.ts";
import { COMPRESSED_MIGRATION } from "../../src/storage/migrations/compressed.ts";
import {
  bitsOf,
  compact,
  forms,
  hex,
  readView,
  setup,
  store,
  type TestSeries,
} from "./compress_helpers.ts";

const STALE = 0x7ff0000000000002n;
const DAY = 86_400_000;
const T0 = Date.UTC(2024, 4, 10, 0, 0, 0);

function series(name: string, times: number[], bits: bigint[]): TestSeries {
  return { labels: { __name__: name, job: "t", instance: name }, times, bits };
}

Deno.test("encodeWindow() uses steps, scales and exceptions for ordinary data", () => {
  const times = [0, 15000, 30000, 45001, 75001];
  const e = encodeWindow(times, new Float64Array([1.25, 2.5, NaN, 3.75, 5]));
  assertEquals(e.stepMs, 15000);
  assertEquals(e.tCorr, [0, 0, 0, 1, 15001]);
  assertEquals(e.scale, 4);
  assertEquals(e.exceptions, [3]);
  assertEquals(e.deltas, [0, 5, 0, 5, 5]);
  const raw = encodeWindow([1, 2], new Float64Array([Math.PI, Math.E]));
  assertEquals(raw.scale, null);
  const cpu = encodeWindow([0, 1], new Float64Array([12345.67, 12360.12]));
  assertEquals(cpu.scale, 100);
});

Deno.test("compaction keeps hostile values and times bit for bit, through the views", async () => {
  const db = await freshDatabase("compress_roundtrip");
  try {
    await setup(db.sql);
    const hostile = [
      STALE,
      0x7ff8000000000000n,
      0xfff8000000000001n,
      0x7ff0000000000001n,
      0x7ffc0000deadbeefn,
      bitsOf(Infinity),
      bitsOf(-Infinity),
      bitsOf(-0),
      bitsOf(0),
      1n,
      0x000fffffffffffffn,
      0x8000000000000001n,
      bitsOf(Number.MAX_VALUE),
      bitsOf(-Number.MIN_VALUE),
      bitsOf(2 ** 53 + 2),
      bitsOf(0.1 + 0.2),
      bitsOf(123456.789),
      bitsOf(-1e300),
    ];
    const irregular = hostile.map((_, i) => T0 + i * 15000 + (i % 3) * 7 + (i > 9 ? 3_600_000 : 0));
    const all: TestSeries[] = [
      // Hostile values on irregular times.
      series("hostile", irregular, hostile),
      // Mostly integer counter with a stale marker and a NaN in it.
      series(
        "counter",
        Array.from({ length: 500 }, (_, i) => T0 + i * 15000),
        Array.from(
          { length: 500 },
          (_, i) =>
            i === 100 ? STALE : i === 300 ? 0x7ff8000000000000n : bitsOf(1e9 + i * 4096 + (i % 5)),
        ),
      ),
      // Two-decimal floats (cpu seconds), one sample per window over days.
      series(
        "cpu",
        Array.from({ length: 40 }, (_, i) => T0 - 20 * DAY + i * (DAY / 2 + 1)),
        Array.from(
          { length: 40 },
          (_, i) => bitsOf(Math.round((12345.67 + i * 14.93) * 100) / 100),
        ),
      ),
      // Full-precision floats: raw.
      series(
        "ratio",
        Array.from({ length: 100 }, (_, i) => T0 + i * 1000),
        Array.from({ length: 100 }, (_, i) => bitsOf(Math.sin(i) / 3)),
      ),
      // Far past, before the epoch and near the earliest time Prometheus allows.
      series("ancient", [-62135596800000, -62135596799999, -1, 0, 1, Date.UTC(1900, 0, 1)], [
        bitsOf(1),
        STALE,
        bitsOf(-0),
        bitsOf(2 ** 52),
        bitsOf(-(2 ** 53)),
        bitsOf(5e-324),
      ]),
    ];
    await store(db.sql, all);
    const before = new Map<string, string[][]>();
    for (const s of all) before.set(s.labels.__name__, await readView(db.sql, s.labels.__name__));
    // The stored rows are what was sent (sanity of the harness itself).
    const hostileRows = before.get("hostile")!;
    assertEquals(hostileRows.map((r) => r[2]), hostile.map(hex));
    assertEquals(hostileRows.map((r) => Number(r[1])), irregular);

    const res = await compact(db.sql, 2);
    assert(res.ran);
    assertEquals(res.samples, all.reduce((a, s) => a + s.times.length, 0));
    const f = await forms(db.sql);
    assertEquals(f.rows, 0, "every sealed row compacted");
    assert(f.windows > 5);
    for (const s of all) {
      assertEquals(
        await readView(db.sql, s.labels.__name__),
        before.get(s.labels.__name__),
        s.labels.__name__,
      );
    }
    const kinds = await db.sql<{ metric_name: string; scaled: number; raw: number }[]>`
      SELECT s.metric_name, count(*) FILTER (WHERE c.v_scale IS NOT NULL)::int AS scaled,
             count(*) FILTER (WHERE c.v_scale IS NULL)::int AS raw
      FROM _prom_data.compressed c JOIN _prom_catalog.series s ON s.id = c.series_id
      GROUP BY 1 ORDER BY 1`;
    const k = Object.fromEntries(kinds.map((r) => [r.metric_name, r]));
    assertEquals(k.counter.raw, 0, "a counter with two NaNs stays scaled (exceptions)");
    assertEquals(k.cpu.raw, 0);
    assertEquals(k.ratio.scaled, 0);
    // A second pass finds nothing left to do and changes nothing.
    const again = await compact(db.sql);
    assertEquals(again.samples, 0);
    for (const s of all) {
      assertEquals(await readView(db.sql, s.labels.__name__), before.get(s.labels.__name__));
    }
  } finally {
    await db.drop();
  }
});

Deno.test("the compressed-storage migration keeps the existing metric views and their data", async () => {
  const db = await freshDatabase("compress_upgrade");
  try {
    // The schema as it was before version 8, with a metric written.
    await db.sql`CREATE SCHEMA _prom_catalog`;
    await db.sql`CREATE TABLE _prom_catalog.migrations (
      version int PRIMARY KEY, description text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`;
    for (const m of MIGRATIONS.filter((m) => m.version < COMPRESSED_MIGRATION.version)) {
      await db.sql.begin(async (tx) => {
        await tx.unsafe(typeof m.sql === "string" ? m.sql : m.sql({ timescaledb: false }));
        await tx`INSERT INTO _prom_catalog.migrations VALUES (${m.version}, ${m.description})`;
      });
    }
    const times = [T0, T0 + 15_000, T0 + 30_000];
    const bits = [bitsOf(1.5), STALE, bitsOf(3)];
    await store(db.sql, [series("old_metric", times, bits)]);
    const before = await readView(db.sql, "old_metric");
    assertEquals(before.map((r) => r[2]), bits.map(hex));
    await setup(db.sql);
    const [{ def }] = await db.sql<{ def: string }[]>`
      SELECT pg_get_viewdef('prom_metric.old_metric'::regclass) AS def`;
    // Both forms, per series (migration 10).
    assert(def.includes("compressed_samples") && def.includes("_prom_data.samples"), def);
    assertEquals(await readView(db.sql, "old_metric"), before);
    await compact(db.sql);
    assertEquals((await forms(db.sql)).rows, 0);
    assertEquals(await readView(db.sql, "old_metric"), before);
  } finally {
    await db.drop();
  }
});

/**
 * One window's bytes as `windowBytesSql` has PostgreSQL send them (the
 * columns the compactor writes from `e`, `array_send` for the arrays).
 */
function windowBytes(e: EncodedWindow, values: Float64Array): Uint8Array {
  const out: number[] = [];
  const b = new DataView(new ArrayBuffer(8));
  const put = (f: (dv: DataView) => void, n: number) => {
    f(b);
    for (let i = 0; i < n; i++) out.push(b.getUint8(i));
  };
  const i4 = (v: number) => put((dv) => dv.setInt32(0, v), 4);
  const i8 = (v: number) => put((dv) => dv.setBigInt64(0, BigInt(v)), 8);
  const f8bits = (v: bigint) => put((dv) => dv.setBigUint64(0, v), 8);
  const us = (ms: number) => (ms - Date.UTC(2000, 0, 1)) * 1000;
  const array = (xs: (number | bigint | null)[] | null, oid: number) => {
    if (xs === null) return i4(-1);
    i4(1), i4(xs.some((x) => x === null) ? 1 : 0), i4(oid), i4(xs.length), i4(1);
    for (const x of xs) {
      if (x === null) i4(-1);
      else if (oid === 23) i4(4), i4(Number(x));
      else i4(8), f8bits(x as bigint);
    }
  };
  const bits = new BigUint64Array(values.buffer);
  i8(us(e.minMs)), i8(us(e.maxMs)), i4(e.stepMs), i4(e.n), i8(e.base);
  put((dv) => dv.setFloat64(0, e.scale ?? NaN), 8);
  array(e.tCorr, 23);
  array(e.scale === null ? null : e.deltas, 23);
  const exc = new Set(e.exceptions);
  array(
    e.scale === null || exc.size === 0 ? null : [...bits].map((x, i) => exc.has(i + 1) ? x : null),
    701,
  );
  array(e.scale === null ? [...bits] : null, 701);
  return new Uint8Array(out);
}

Deno.test("decodeWindows() gives back what encodeWindow() took, bit for bit, for every shape", () => {
  const hostile = [
    STALE,
    0x7ff8000000000001n, // NaN with a payload
    0xfff8000000000000n, // negative NaN
    0x7ff0000000000000n, // +Inf
    0xfff0000000000000n, // -Inf
    0x8000000000000000n, // -0
    1n, // smallest subnormal
    0x800fffffffffffffn, // a negative subnormal
  ];
  const n = 480;
  const regular = Array.from({ length: n }, (_, i) => T0 + i * 15_000);
  const irregular = Array.from({ length: n }, (_, i) => T0 + 3 + i * 15_000 + (i % 7) * 13);
  const shapes: [string, number[], bigint[]][] = [
    ["scaled, regular", regular, regular.map((_, i) => bitsOf(i * 0.25))],
    [
      "scaled, exceptions",
      regular,
      regular.map((_, i) => i % 40 === 3 ? hostile[(i / 40 | 0) % 8] : bitsOf(100 - i)),
    ],
    ["scaled, irregular", irregular, irregular.map((_, i) => bitsOf((i % 13) * 0.5))],
    [
      "raw",
      irregular,
      irregular.map((_, i) => i % 50 === 0 ? hostile[(i / 50) % 8] : bitsOf(Math.sin(i))),
    ],
    ["all hostile", regular.slice(0, 8), hostile],
    ["integers near 2^53", regular, regular.map((_, i) => bitsOf(2 ** 53 - 1 - i * 7))],
    ["one sample", [T0 - 5], [bitsOf(Math.PI)]],
    ["before 1970", regular.map((t) => t - 60 * 365 * DAY), regular.map((_, i) => bitsOf(i))],
  ];
  const kinds = new Set<string>();
  for (const [name, times, bits] of shapes) {
    const values = new Float64Array(new BigUint64Array(bits).buffer);
    const e = encodeWindow(times, values);
    kinds.add(`${e.scale === null ? "raw" : "scaled"} ${e.tCorr ? "corrected" : "on the step"}`);
    const bytes = windowBytes(e, values);
    const d = decodeWindows(bytes, -Infinity, Infinity);
    assertEquals(Array.from(d.timestamps), times, name);
    assertEquals(
      [...new BigUint64Array(new Uint8Array(d.valuesBE).reverse().buffer)].reverse(),
      bits.map((b) => b),
      name,
    );
    // Bounds: a slice from the second sample to the one before the last.
    if (times.length > 2) {
      const cut = decodeWindows(bytes, times[1], times[times.length - 2]);
      assertEquals(Array.from(cut.timestamps), times.slice(1, -1), `${name}, cut`);
    }
  }
  assertEquals(kinds.size, 4, [...kinds].join("; "));
});
