import assert from "node:assert/strict";
import { HttpError } from "../../src/errors.ts";
import { negotiateWrite, writtenHeaders } from "../../src/remote_write/negotiate.ts";

const ROWS: { name: string; type?: string; encoding?: string; want: string | RegExp }[] = [
  { name: "1.0 without proto", type: "application/x-protobuf", want: "1.0" },
  { name: "1.0 named", type: "application/x-protobuf;proto=prometheus.WriteRequest", want: "1.0" },
  {
    name: "2.0",
    type: "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    want: "2.0",
  },
  {
    name: "2.0, spaces, quotes, upper-case names",
    type: 'Application/X-Protobuf ; PROTO="io.prometheus.write.v2.Request"',
    want: "2.0",
  },
  {
    name: "an unknown message",
    type: "application/x-protobuf;proto=io.prometheus.write.v3.Request",
    want: /415 Unsupported protobuf message "io.prometheus.write.v3.Request"/,
  },
  {
    name: "a message name in the wrong case",
    type: "application/x-protobuf;proto=IO.prometheus.write.v2.Request",
    want: /415 Unsupported protobuf message/,
  },
  {
    name: "JSON",
    type: "application/json",
    want: /415 Unsupported Content-Type "application\/json"/,
  },
  { name: "no type", want: /415 Unsupported Content-Type ""/ },
  {
    name: "zstd",
    type: "application/x-protobuf",
    encoding: "zstd",
    want: /415 Unsupported Content-Encoding "zstd"/,
  },
];

for (const row of ROWS) {
  Deno.test(`negotiateWrite(): ${row.name}`, () => {
    const h = new Headers({ "content-encoding": row.encoding ?? "snappy" });
    if (row.type !== undefined) h.set("content-type", row.type);
    if (typeof row.want === "string") {
      assert.equal(negotiateWrite(h), row.want);
      return;
    }
    assert.throws(() => negotiateWrite(h), (err: unknown) => {
      assert.ok(err instanceof HttpError);
      assert.match(`${err.status} ${err.message}`, row.want as RegExp);
      return true;
    });
  });
}

Deno.test("writtenHeaders() names the three counts", () => {
  assert.deepEqual(writtenHeaders({ samples: 3, histograms: 2, exemplars: 0 }), {
    "X-Prometheus-Remote-Write-Samples-Written": "3",
    "X-Prometheus-Remote-Write-Histograms-Written": "2",
    "X-Prometheus-Remote-Write-Exemplars-Written": "0",
  });
});
