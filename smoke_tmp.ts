import { nodeExporterSeries, writeRequestBody } from "./tests/helpers/payload.ts";
const now = Date.now();
const body = writeRequestBody([
  {
    labels: { __name__: "up", job: "node", instance: "a:1" },
    samples: [
      { value: 1, timestamp: now },
      { value: NaN, timestamp: now + 1000, bits: 0x7ff0000000000002n } as never,
    ],
  },
  {
    labels: { __name__: "temp", job: "x" },
    samples: [{ value: Infinity, timestamp: now }, { value: -Infinity, timestamp: now + 1 }],
  },
]);
const post = (b: Uint8Array) =>
  fetch("http://127.0.0.1:19201/write", {
    method: "POST",
    headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
    body: b,
  });
let r = await post(body);
console.log(r.status, await r.text());
r = await post(body);
console.log("retry", r.status, await r.text());
const big = writeRequestBody(nodeExporterSeries(2000, now));
let t0 = performance.now();
r = await post(big);
console.log("big", r.status, await r.text(), performance.now() - t0);
t0 = performance.now();
for (let i = 1; i <= 20; i++) {
  r = await post(writeRequestBody(nodeExporterSeries(2000, now + i * 1000)));
  await r.text();
}
console.log("20x2000", performance.now() - t0);
