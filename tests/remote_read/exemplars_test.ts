/**
 * Remote read returns the exemplars of each series in the query's time
 * range (`TimeSeries.exemplars`), every bit of their values kept: written
 * with remote write 1.0 through an in-process connector, read back with a
 * remote-read request, walked by hand and decoded with protobufjs.
 */
import assert from "node:assert/strict";
import { snappy } from "../../deps.ts";
import { ReadRequest, ReadResponse } from "../../proto/messages.ts";
import type { Connector } from "../../src/app.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import { STALE_NAN_BITS } from "../helpers/payload.ts";
import { replaceDouble, v1Request } from "../data_model/build.ts";

const T = Date.UTC(2024, 0, 15, 12, 0, 0);
const PLACEHOLDER = 1.2345e-300;

/** An exemplar as walked: labels, value bits, timestamp. */
type Ex = [[string, string][], bigint, number];

/** The labels and exemplars of every series of a ReadResponse, walked by hand. */
function exemplarsOf(buf: Uint8Array): { labels: [string, string][]; exemplars: Ex[] }[][] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const text = new TextDecoder();
  let pos = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n;; shift += 7n) {
      const b = buf[pos++];
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  const len = () => Number(varint());
  const fields = (end: number, on: (f: number, w: number) => void) => {
    while (pos < end) {
      const key = Number(varint());
      on(key >>> 3, key & 7);
    }
    assert.equal(pos, end, "message overran its length");
  };
  const skip = (w: number) => {
    if (w === 0) varint();
    else if (w === 1) pos += 8;
    else if (w === 2) {
      const n = len(); // before reading pos
      pos += n;
    } else throw new Error(`wire type ${w}`);
  };
  const label = (end: number): [string, string] => {
    let name = "", value = "";
    fields(end, (f, w) => {
      assert.equal(w, 2);
      const n = len();
      const s = text.decode(buf.subarray(pos, pos + n));
      pos += n;
      if (f === 1) name = s;
      else value = s;
    });
    return [name, value];
  };
  const out: { labels: [string, string][]; exemplars: Ex[] }[][] = [];
  fields(buf.length, (f, w) => {
    assert.deepEqual([f, w], [1, 2]);
    const list: { labels: [string, string][]; exemplars: Ex[] }[] = [];
    out.push(list);
    fields(len() + pos, (f, w) => {
      assert.deepEqual([f, w], [1, 2]);
      const s = { labels: [] as [string, string][], exemplars: [] as Ex[] };
      list.push(s);
      fields(len() + pos, (f, w) => {
        if (f === 1) s.labels.push(label(len() + pos));
        else if (f === 3) {
          assert.equal(w, 2);
          const e: Ex = [[], 0n, 0];
          fields(len() + pos, (f, w) => {
            if (f === 1) e[0].push(label(len() + pos));
            else if (f === 2) {
              assert.equal(w, 1);
              e[1] = dv.getBigUint64(pos, true);
              pos += 8;
            } else {
              assert.deepEqual([f, w], [3, 0]);
              e[2] = Number(BigInt.asIntN(64, varint()));
            }
          });
          s.exemplars.push(e);
        } else skip(w);
      });
    });
  });
  return out;
}

function bits(v: number): bigint {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, v, true);
  return dv.getBigUint64(0, true);
}

async function read(
  c: Connector,
  queries: { start: number; end: number; matchers: [string, string][] }[],
): Promise<Uint8Array> {
  const req = ReadRequest.encode(ReadRequest.fromObject({
    queries: queries.map((q) => ({
      start_timestamp_ms: q.start,
      end_timestamp_ms: q.end,
      matchers: q.matchers.map(([name, value]) => ({ type: 0, name, value })),
    })),
  })).finish();
  const res = await fetch(`${c.url}/read`, {
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf",
      "x-prometheus-remote-read-version": "0.1.0",
    },
    body: snappy.compress(req) as Uint8Array<ArrayBuffer>,
  });
  const body = new Uint8Array(await res.arrayBuffer());
  assert.equal(res.status, 200, new TextDecoder().decode(body));
  return snappy.uncompress(body);
}

Deno.test("remote read returns each series' exemplars in the range, bit for bit", async () => {
  const db = await freshDatabase("read_exemplars");
  const c = await inProcessConnector(db.uri, [], { pool: 4 });
  try {
    const raw = v1Request([
      {
        labels: { __name__: "requests_total", job: "api" },
        samples: [{ value: 1, timestamp: T }, { value: 2, timestamp: T + 15_000 }],
        exemplars: [
          { labels: { trace_id: "t1" }, value: 0.125, timestamp: T + 3 },
          { labels: { trace_id: "t2", span_id: "s2" }, value: PLACEHOLDER, timestamp: T + 15_000 },
          { labels: { trace_id: "t3" }, value: -0, timestamp: T + 60_000 },
          { labels: { trace_id: "t4" }, value: Number.MIN_VALUE, timestamp: T + 60_000 },
        ],
      },
      {
        labels: { __name__: "requests_total", job: "web" },
        samples: [{ value: 5, timestamp: T }, { value: 6, timestamp: T + 60_000 }],
      },
      {
        labels: { __name__: "other", job: "api" },
        samples: [{ value: 5, timestamp: T }],
        exemplars: [{ labels: { trace_id: "o1" }, value: 9, timestamp: T }],
      },
    ]);
    assert.equal(replaceDouble(raw, PLACEHOLDER, STALE_NAN_BITS), 1);
    const res = await fetch(`${c.url}/write`, {
      method: "POST",
      headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
      body: snappy.compress(raw) as Uint8Array<ArrayBuffer>,
    });
    assert.equal(res.status, 204, await res.text());

    const body = await read(c, [
      { start: T, end: T + 15_000, matchers: [["__name__", "requests_total"]] },
      { start: T + 15_000, end: T + 60_000, matchers: [["job", "api"]] },
      { start: T + 1, end: T + 2, matchers: [["__name__", "requests_total"]] },
    ]);
    const api: [string, string][] = [["__name__", "requests_total"], ["job", "api"]];
    const web: [string, string][] = [["__name__", "requests_total"], ["job", "web"]];
    // Series come in no particular order: sorted here by labels.
    const got = exemplarsOf(body).map((list) =>
      list.sort((a, b) => JSON.stringify(a.labels) < JSON.stringify(b.labels) ? -1 : 1)
    );
    assert.deepEqual(got, [
      [
        {
          labels: api,
          exemplars: [
            [[["trace_id", "t1"]], bits(0.125), T + 3],
            [[["span_id", "s2"], ["trace_id", "t2"]], STALE_NAN_BITS, T + 15_000],
          ],
        },
        { labels: web, exemplars: [] },
      ],
      [
        {
          labels: api,
          exemplars: [
            [[["span_id", "s2"], ["trace_id", "t2"]], STALE_NAN_BITS, T + 15_000],
            [[["trace_id", "t3"]], bits(-0), T + 60_000],
            [[["trace_id", "t4"]], bits(Number.MIN_VALUE), T + 60_000],
          ],
        },
      ],
      // No samples in range: no series, whatever its exemplars.
      [],
    ]);

    // A standard decoder reads the same message, samples and exemplars together.
    const decoded = ReadResponse.toObject(ReadResponse.decode(body), {
      longs: Number,
    }) as {
      results: {
        timeseries: {
          samples?: { value: number; timestamp: number }[];
          exemplars?: { labels: unknown[]; value: number; timestamp: number }[];
        }[];
      }[];
    };
    const [first, second] = [...decoded.results[0].timeseries].sort((a, b) =>
      (a.exemplars?.length ?? 0) > (b.exemplars?.length ?? 0) ? -1 : 1
    );
    assert.deepEqual(first.samples, [{ value: 1, timestamp: T }, {
      value: 2,
      timestamp: T + 15_000,
    }]);
    assert.deepEqual(first.exemplars![0], {
      labels: [{ name: "trace_id", value: "t1" }],
      value: 0.125,
      timestamp: T + 3,
    });
    assert.equal((second.exemplars ?? []).length, 0);
  } finally {
    await c.stop();
    await db.drop();
  }
});
