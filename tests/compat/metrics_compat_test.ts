/**
 * Promscale-named self-metrics (issue 20): an HA connector in process gets
 * samples of two replicas, and /metrics carries Promscale's HA leader and
 * ingest series with Promscale's label sets, beside our own names.
 */
import assert from "node:assert/strict";
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import { writeRequestBody } from "../helpers/payload.ts";

const HEADERS = {
  "content-encoding": "snappy",
  "content-type": "application/x-protobuf",
  "x-prometheus-remote-write-version": "0.1.0",
};

async function write(url: string, replica: string, t: number): Promise<number> {
  const res = await fetch(`${url}/write`, {
    method: "POST",
    headers: HEADERS,
    body: new Uint8Array(writeRequestBody([{
      labels: { __name__: "compat_up", cluster: "c1", __replica__: replica, job: "j" },
      samples: [{ value: 1, timestamp: t }],
    }])),
  });
  await res.body?.cancel();
  return res.status;
}

/** `name{labels} value` lines of the exposition, as label text → value. */
function series(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\S+?)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? "", Number(m[3]));
  }
  return out;
}

Deno.test("/metrics has Promscale's HA leader and ingest series", async () => {
  const db = await freshDatabase("compat_metrics");
  const c = await inProcessConnector(db.uri, ["--metrics.high-availability"]);
  try {
    const t0 = Date.now() - 60_000;
    assert.equal(await write(c.url, "a", t0), 204);
    // The follower's samples are not stored, yet its requests are answered 2xx.
    assert.equal(await write(c.url, "b", t0 + 1), 204);
    assert.equal(await write(c.url, "a", t0 + 10_000), 204);
    const text = await (await fetch(`${c.url}/metrics`)).text();

    assert.deepEqual(
      series(text, "promscale_ha_cluster_leader_info"),
      new Map([['{cluster="c1",replica="a"}', 1]]),
    );
    const changes = series(text, "promscale_ha_cluster_leader_changes_total");
    assert.deepEqual([...changes.keys()], ['{cluster="c1"}']);
    assert.ok(changes.get('{cluster="c1"}')! >= 1);

    assert.deepEqual(
      series(text, "promscale_ingest_requests_total"),
      new Map([['{code="2xx",type="metric"}', 3]]),
    );
    assert.equal(
      series(text, "promscale_ingest_duration_seconds_count").get(
        '{code="2xx",type="metric"}',
      ),
      3,
    );
    assert.equal(
      series(text, "promscale_ingest_duration_seconds_bucket").get(
        '{code="2xx",type="metric",le="300"}',
      ),
      3,
    );
    assert.equal(
      series(text, "promscale_ingest_items_total").get(
        '{kind="sample",subsystem="copier",type="metric"}',
      ),
      2,
    );
    assert.equal(
      series(text, "promscale_ingest_max_sent_timestamp_milliseconds").get('{type="metric"}'),
      t0 + 10_000,
    );
    assert.match(text, /^# TYPE promscale_ingest_duplicates_total counter$/m);
    // Our own names stay.
    assert.equal(series(text, "promscale_ha_cluster_leader").get('{cluster="c1",replica="a"}'), 1);
    assert.equal(series(text, "promscale_ingest_samples_total").get(""), 2);

    // A rejected request counts under its status code.
    const bad = await fetch(`${c.url}/write`, { method: "POST", headers: HEADERS, body: "x" });
    await bad.body?.cancel();
    const after = await (await fetch(`${c.url}/metrics`)).text();
    assert.equal(
      series(after, "promscale_ingest_requests_total").get(`{code="${bad.status}",type="metric"}`),
      1,
    );
  } finally {
    await c.stop();
    await db.drop();
  }
});
