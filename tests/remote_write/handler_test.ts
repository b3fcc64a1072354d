/**
 * The remote-write HTTP contract without a database: the status table of
 * tests/helpers/write_contract.ts run against writeHandler alone, through
 * `new Request(...)`, with a pass-through filter and a recording writer;
 * then how the handler treats its collaborators (a writer that fails, the
 * filter's guard and commit hooks, a body that never arrives).
 */
import { mapDbError } from "../../src/db_errors.ts";
import {
  type FilterResult,
  type IngestFilter,
  passThrough,
  type SampleWriter,
  type WriteOptions,
  type WriteSeries,
} from "../../src/ingest.ts";
import { writeHandler, type WriteHandlerOptions } from "../../src/remote_write/handler.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import {
  MAX_DECODED,
  MAX_REQUEST,
  type Row,
  ROWS,
  SNAPPY,
  validBody,
} from "../helpers/write_contract.ts";

/** A writer that keeps what it is given, or fails with `fail`. */
class RecordingWriter implements SampleWriter {
  calls: { series: WriteSeries[]; options?: WriteOptions }[] = [];
  fail?: unknown;

  write(series: WriteSeries[], options?: WriteOptions) {
    this.calls.push({ series, options });
    if (this.fail !== undefined) return Promise.reject(this.fail);
    options?.guard?.();
    let samples = 0;
    for (const s of series) samples += s.timestamps.length;
    return Promise.resolve({ samples, newSeries: 0, deduplicated: false });
  }
}

function handler(writer: SampleWriter, extra: Partial<WriteHandlerOptions> = {}) {
  return writeHandler({
    maxRequestBytes: MAX_REQUEST,
    maxDecodedBytes: MAX_DECODED,
    readTimeoutMs: 5_000,
    filter: passThrough,
    writer,
    ...extra,
  });
}

function request(row: Pick<Row, "method" | "path" | "headers" | "body">): Request {
  let body: BodyInit | undefined;
  if (Array.isArray(row.body)) {
    const chunks = row.body;
    body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const chunk of chunks) c.enqueue(chunk);
        c.close();
      },
    });
  } else if (row.body) {
    body = row.body as Uint8Array<ArrayBuffer>;
  }
  const withBody = row.method !== "GET" && row.method !== "HEAD";
  return new Request(`http://connector${row.path ?? "/write"}`, {
    method: row.method,
    headers: row.headers,
    body: withBody ? body : undefined,
  });
}

/** Rows the write handler answers itself (an unknown path is the router's). */
const HANDLER_ROWS = ROWS.filter((r) => (r.path ?? "/write").endsWith("/write"));

Deno.test("writeHandler() answers the remote-write status table without a database", async (t) => {
  for (const row of HANDLER_ROWS) {
    await t.step(row.name, async () => {
      const writer = new RecordingWriter();
      const res = await handler(writer)(request(row));
      const text = await res.text();
      assertEquals(res.status, row.expectedStatus, `body: ${text}`);
      if (row.expectedStatus >= 400) {
        assert(/^[^\r\n]+\n$/.test(text), `not exactly one line: ${JSON.stringify(text)}`);
        assertStringIncludes(res.headers.get("content-type") ?? "", "text/plain");
        assertEquals(writer.calls.length, 0, "a refused request reached the writer");
      } else {
        assertEquals(text, "");
        assertEquals(writer.calls.length, 1);
        for (const s of writer.calls[0].series) {
          const name = s.labels.find((l) => l.name === "__name__")?.value;
          assert(name !== "contract_rejected", "a series of a rejected request was written");
        }
      }
      if (row.bodyIncludes) assertStringIncludes(text, row.bodyIncludes);
      if (row.expectedStatus === 405) assertEquals(res.headers.get("allow"), "POST");
    });
  }
});

Deno.test("writeHandler() hands the decoded series to the writer, sorted and complete", async () => {
  const writer = new RecordingWriter();
  const res = await handler(writer)(request({ method: "POST", headers: SNAPPY, body: validBody }));
  assertEquals(res.status, 204);
  const [{ series }] = writer.calls;
  assertEquals(series.length, 1);
  assertEquals(series[0].labels.map((l) => l.name), ["__name__", "job"]);
  assertEquals([...series[0].values], [0, 1, 2]);
});

Deno.test("writeHandler() answers a database failure 503 with Retry-After, bad data 400", async () => {
  const down = Object.assign(new Error("terminating connection"), { code: "57P01" });
  const bad = Object.assign(new Error("invalid input syntax"), { code: "22P02" });
  for (
    const [err, status, text] of [[down, 503, "Database unavailable"], [
      bad,
      400,
      "Cannot store",
    ]] as const
  ) {
    const writer = new RecordingWriter();
    writer.fail = mapDbError(err, "Cannot store samples", "Database unavailable");
    const res = await handler(writer)(
      request({ method: "POST", headers: SNAPPY, body: validBody }),
    );
    const body = await res.text();
    assertEquals(res.status, status, body);
    assertStringIncludes(body, text);
    assertEquals(res.headers.get("retry-after"), status === 503 ? "1" : null);
  }
});

Deno.test("writeHandler() passes the filter's guard to the writer and calls committed only after a write", async () => {
  const events: string[] = [];
  const filter: IngestFilter = {
    apply: (d): Promise<FilterResult> =>
      Promise.resolve({
        series: d.series,
        guard: () => events.push("guard"),
        committed: () => events.push("committed"),
      }),
  };
  const writer = new RecordingWriter();
  const ok = await handler(writer, { filter })(
    request({ method: "POST", headers: SNAPPY, body: validBody }),
  );
  assertEquals(ok.status, 204);
  assertEquals(events, ["guard", "committed"]);

  events.length = 0;
  writer.fail = mapDbError(new Error("connection lost"), "x", "Database unavailable");
  const failed = await handler(writer, { filter })(
    request({ method: "POST", headers: SNAPPY, body: validBody }),
  );
  assertEquals(failed.status, 503);
  await failed.body?.cancel();
  assertEquals(events, [], "committed was called for a write that failed");
});

Deno.test("writeHandler() answers 503 with Retry-After when the body does not arrive in time", async () => {
  let cancelled = false;
  const never = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(validBody.subarray(0, 5));
    },
    cancel() {
      cancelled = true;
    },
  });
  const writer = new RecordingWriter();
  const res = await handler(writer, { readTimeoutMs: 50 })(
    new Request("http://connector/write", { method: "POST", headers: SNAPPY, body: never }),
  );
  const body = await res.text();
  assertEquals(res.status, 503, body);
  assertStringIncludes(body, "not received within 50 ms");
  assertEquals(res.headers.get("retry-after"), "1");
  assert(cancelled, "the body stream was not cancelled");
  assertEquals(writer.calls.length, 0);
});
