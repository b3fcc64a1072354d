/**
 * Decode amplification is bounded. A 2.8 MB snappy body holding 2,000,000
 * one-sample series decodes to 60 MB and would take some 830 MB of heap as
 * series objects; a few at once exhausted the connector's memory. Now:
 *
 * - a request over --web.max-series-per-request (or -labels-) is refused
 *   with 413 after a cheap count, before any series is decoded;
 * - requests in flight together reserve their estimated memory from
 *   --web.max-in-flight-memory: those that do not fit get 503 with
 *   Retry-After, one that never could gets 413.
 *
 * Each attack body ends with a series without `__name__`, so a body that is
 * decoded fully costs all its memory and then gets 400 (no database work):
 * the worst case. Peak RSS (VmHWM) of a connector process is read before
 * and after each wave of bodies sent at once.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import {
  nodeExporterSeries,
  snappyCompress,
  uvarint,
  writeRequestBody,
} from "../helpers/payload.ts";
import { killAll, processMemory, startConnector } from "../helpers/procs.ts";
import { MemoryBudget, scanWriteRequest } from "../../src/limits.ts";
import { writeHandler } from "../../src/remote_write/handler.ts";
import { passThrough, type SampleWriter } from "../../src/ingest.ts";
import { uncompressSnappyBlock } from "../../src/wire/snappy.ts";

const MiB = 1024 * 1024;
const BUDGET = 512 * MiB;
/** Bodies of 2,000,000 series sent at once (the old code held ~830 MB per body). */
const HUGE_BODIES = Number(Deno.env.get("AMPLIFICATION_HUGE_BODIES") ?? 8);
/** Valid bodies of LARGE_SERIES series (under the series limit) sent at once. */
const LARGE_BODIES = Number(Deno.env.get("AMPLIFICATION_LARGE_BODIES") ?? 32);
const LARGE_SERIES = 150_000;

const enc = new TextEncoder();

/** A TimeSeries field with the given labels and one sample (value 1, timestamp 1). */
function seriesField(labels: [string, string][]): number[] {
  const inner: number[] = [];
  for (const [k, v] of labels) {
    const kb = [...enc.encode(k)];
    const vb = [...enc.encode(v)];
    const label = [0x0a, kb.length, ...kb, 0x12, vb.length, ...vb];
    inner.push(0x0a, label.length, ...label);
  }
  inner.push(0x12, 0x0b, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x01);
  return [0x0a, inner.length, ...inner];
}

/**
 * A snappy body: `count` copies of the one-sample series {__name__="a"},
 * then a series without `__name__` (400 once decoded). Written as snappy
 * copies of 64 bytes: 3 bytes of body per 64 decoded, as a compressor would.
 */
function attackBody(count: number): Uint8Array<ArrayBuffer> {
  const one = seriesField([["__name__", "a"]]);
  const tail = seriesField([["x", "y"]]);
  const repeated = one.length * (count - 1);
  const out: number[] = [...uvarint(one.length * count + tail.length)];
  out.push((one.length - 1) << 2, ...one); // literal
  const copies = new Uint8Array(Math.ceil(repeated / 64) * 3);
  let o = 0;
  for (let left = repeated; left > 0; left -= 64) {
    const len = Math.min(64, left);
    copies[o++] = ((len - 1) << 2) | 2; // copy, 2-byte offset
    copies[o++] = one.length;
    copies[o++] = 0;
  }
  const lit = [(tail.length - 1) << 2, ...tail];
  const body = new Uint8Array(out.length + o + lit.length);
  body.set(out, 0);
  body.set(copies.subarray(0, o), out.length);
  body.set(lit, out.length + o);
  return body;
}

/**
 * A valid snappy body of `count` one-sample series {__name__="a"} with
 * timestamps `fromMs`, `fromMs + 1`, …: stored in one series, no new ones.
 */
function validBody(count: number, fromMs: number): Uint8Array<ArrayBuffer> {
  const label = seriesField([["__name__", "a"]]).slice(2, 17); // the label field
  const raw = new Uint8Array(count * 40);
  let o = 0;
  for (let i = 0; i < count; i++) {
    const ts = uvarint(fromMs + i);
    const sample = [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, ...ts];
    const inner = [...label, 0x12, sample.length, ...sample];
    raw.set([0x0a, inner.length, ...inner], o);
    o += 2 + inner.length;
  }
  return snappyCompress(raw.subarray(0, o)) as Uint8Array<ArrayBuffer>;
}

async function post(url: string, body: Uint8Array<ArrayBuffer>) {
  try {
    const res = await fetch(`${url}/write`, {
      method: "POST",
      headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
      body,
      signal: AbortSignal.timeout(60_000),
    });
    return {
      status: res.status,
      text: await res.text(),
      retryAfter: res.headers.get("retry-after"),
    };
  } catch (err) {
    return { status: 0, text: (err as Error).message, retryAfter: null };
  }
}

function tally(xs: { status: number }[]): string {
  const m = new Map<number, number>();
  for (const x of xs) m.set(x.status, (m.get(x.status) ?? 0) + 1);
  return [...m].sort().map(([s, n]) => `${n}x${s}`).join(" ");
}

Deno.test("the attack body is what it claims: 2,000,000 series in 2.8 MB", () => {
  const body = attackBody(2_000_000);
  const raw = uncompressSnappyBlock(body, 128 * MiB);
  assertEquals(raw.length, 2_000_000 * 30 + 23);
  assertEquals(scanWriteRequest(raw), {
    series: 2_000_001,
    labels: 2_000_001,
    samples: 2_000_001,
    histograms: 0,
    exemplars: 0,
  });
  assert(body.length < 2.9e6, `${body.length} bytes`);
});

Deno.test("per-request limits: 413 before decoding, naming the flag", async () => {
  let wrote = 0;
  const writer = { write: () => (wrote++, Promise.resolve({})) } as unknown as SampleWriter;
  const budget = new MemoryBudget(64 * MiB);
  const handler = writeHandler({
    maxRequestBytes: 32 * MiB,
    maxDecodedBytes: 64 * MiB,
    readTimeoutMs: 5_000,
    filter: passThrough,
    writer,
    limits: { maxSeries: 1_000, maxLabels: 5_000 },
    budget,
  });
  const send = async (body: Uint8Array) => {
    const res = await handler(
      new Request("http://x/write", {
        method: "POST",
        headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
        body: body as Uint8Array<ArrayBuffer>,
      }),
    );
    return {
      status: res.status,
      text: await res.text(),
      retryAfter: res.headers.get("retry-after"),
    };
  };
  const tooMany = await send(attackBody(1_001));
  assertEquals(tooMany.status, 413, tooMany.text);
  assertMatch(
    tooMany.text,
    /^Write request has 1002 series, limit 1000 per request \(--web.max-series-per-request\)/,
  );
  const labels = nodeExporterSeries(600); // 10 labels each: 6,000 > 5,000
  const tooManyLabels = await send(writeRequestBody(labels));
  assertEquals(tooManyLabels.status, 413, tooManyLabels.text);
  assertMatch(tooManyLabels.text, /--web.max-labels-per-request/);
  assertEquals((await send(writeRequestBody(nodeExporterSeries(400)))).status, 204);
  // A request whose estimate exceeds the whole budget can never fit: 413.
  const never = await send(attackBody(999));
  assertEquals(never.status, 400, never.text); // fits: decoded, then the bad tail
  const small = new MemoryBudget(MiB);
  const h2 = writeHandler({
    maxRequestBytes: 32 * MiB,
    maxDecodedBytes: 64 * MiB,
    readTimeoutMs: 5_000,
    filter: passThrough,
    writer,
    budget: small,
  });
  const res = await h2(
    new Request("http://x/write", {
      method: "POST",
      headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
      body: attackBody(10_000),
    }),
  );
  assertEquals(res.status, 413);
  assertMatch(
    await res.text(),
    /more than all requests together may hold \(--web.max-in-flight-memory 1.0 MiB\)/,
  );
  // Over the budget now (another request holds it): 503 with Retry-After.
  const held = small.reservation();
  held.reserve(MiB - 1000, "a test");
  const busy = await h2(
    new Request("http://x/write", {
      method: "POST",
      headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
      body: writeRequestBody(nodeExporterSeries(10)) as Uint8Array<ArrayBuffer>,
    }),
  );
  assertEquals(busy.status, 503);
  assertEquals(busy.headers.get("retry-after"), "1");
  assertMatch(await busy.text(), /^Too much memory held by requests in flight/);
  held.release();
  assertEquals(small.used, 0);
  assertEquals(budget.used, 0, "every request gave its reservation back");
  assertEquals(wrote, 1);
});

Deno.test({
  name: "many amplification bodies at once: peak RSS stays bounded",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("sec_amplification");
    try {
      const c = await startConnector({
        dbUri: db.uri,
        args: ["--db.connections-max", "2", "--web.max-in-flight-memory", String(BUDGET)],
      });
      const pid = c.proc.pid;
      // Warm up with normal writes.
      for (let i = 0; i < 3; i++) {
        const r = await post(
          c.url,
          writeRequestBody(nodeExporterSeries(500, 1e12 + i)) as Uint8Array<ArrayBuffer>,
        );
        assertEquals(r.status, 204, r.text);
      }
      const T0 = 1_700_000_000_000;
      const first = await post(c.url, validBody(1, T0 - 1));
      assertEquals(first.status, 204, first.text);
      const huge = attackBody(2_000_000);
      const large = Array.from(
        { length: LARGE_BODIES },
        (_, k) => validBody(LARGE_SERIES, T0 + k * LARGE_SERIES),
      );
      const start = processMemory(pid);

      let t0 = performance.now();
      const hugeResults = await Promise.all(
        Array.from({ length: HUGE_BODIES }, () => post(c.url, huge)),
      );
      const hugeMs = performance.now() - t0;
      const afterHuge = processMemory(pid);

      // Valid bodies under the per-request limits, sent at once while the
      // samples table is locked: those admitted are decoded and wait for the
      // database, holding their memory, as under a slow database.
      const locked = Promise.withResolvers<void>();
      const release = Promise.withResolvers<void>();
      const lock = db.sql.begin(async (tx) => {
        await tx`LOCK TABLE _prom_data.samples IN SHARE MODE`;
        locked.resolve();
        await release.promise;
      });
      await locked.promise;
      t0 = performance.now();
      const pending = large.map((body) => post(c.url, body));
      // The refused ones answer at once; the admitted ones once unlocked.
      const early = await Promise.race([
        Promise.all(pending),
        new Promise<null>((r) => setTimeout(() => r(null), 3_000)),
      ]);
      const duringLock = processMemory(pid);
      release.resolve();
      await lock;
      const largeResults = early ?? await Promise.all(pending);
      const largeMs = performance.now() - t0;
      const afterLarge = processMemory(pid);

      console.log(
        `amplification: peak RSS ${Math.round(start.hwm / MiB)} MiB after warm-up; ` +
          `${HUGE_BODIES} bodies of 2,000,000 series (${huge.length} bytes each) at once: ` +
          `${tally(hugeResults)} in ${Math.round(hugeMs)} ms, peak RSS +${
            Math.round((afterHuge.hwm - start.hwm) / MiB)
          } MiB; ${LARGE_BODIES} valid bodies of ${LARGE_SERIES} series (${
            large[0].length
          } bytes) at once against a locked table: ${tally(largeResults)} in ${
            Math.round(largeMs)
          } ms, peak RSS +${Math.round((afterLarge.hwm - start.hwm) / MiB)} MiB (+${
            Math.round((duringLock.hwm - start.hwm) / MiB)
          } MiB while locked; budget ${BUDGET / MiB} MiB); RSS now ${
            Math.round(afterLarge.rss / MiB)
          } MiB`,
      );
      for (const r of hugeResults) {
        assertEquals(r.status, 413, r.text);
        assertMatch(r.text, /--web.max-series-per-request/);
      }
      assert(afterHuge.hwm - start.hwm < BUDGET, "the huge bodies took more than the budget");
      // Some were admitted and stored, the rest refused at once: 503 with Retry-After.
      const stored = largeResults.filter((r) => r.status === 204);
      const later = largeResults.filter((r) => r.status === 503);
      assertEquals(stored.length + later.length, LARGE_BODIES, tally(largeResults));
      assert(stored.length >= 1 && later.length >= 1, tally(largeResults));
      for (const r of later) {
        assertEquals(r.retryAfter, "1");
        assertMatch(r.text, /^Too much memory held by requests in flight/);
      }
      assert(
        afterLarge.hwm - start.hwm < BUDGET * 1.5,
        `peak RSS grew by ${Math.round((afterLarge.hwm - start.hwm) / MiB)} MiB`,
      );
      // Still writing, and the budget is free again.
      const ok = await post(
        c.url,
        writeRequestBody(nodeExporterSeries(3)) as Uint8Array<ArrayBuffer>,
      );
      assertEquals(ok.status, 204, ok.text);
      const metrics = await (await fetch(`${c.url}/metrics`)).text();
      assertMatch(metrics, /^promscale_http_requests_in_flight_memory_bytes 0$/m);
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
