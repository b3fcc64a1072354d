/**
 * `GET /` and `GET /api/v1/status/ha` without a browser: the JSON twin's
 * content after two clusters and a leader change, escaping of hostile
 * cluster names, authentication with --web.auth.ignore-path, the bound on
 * clusters listed, and the gauges the page and the alerts rely on.
 */
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { freshDatabase } from "../helpers/db.ts";
import type { StatusReport } from "../../src/ops/status.ts";
import { EVIL_CLUSTER, HA_FLAGS, haFixture, writeHa } from "./fixture.ts";

const BASIC = { authorization: `Basic ${btoa("ops:s3cret")}` };

Deno.test("The JSON status lists both clusters, the leader change and this connector's counts", async () => {
  const f = await haFixture("ops_status_json");
  try {
    const res = await fetch(`${f.connector.url}/api/v1/status/ha`);
    assertEquals(res.status, 200);
    assertStringIncludes(res.headers.get("content-type") ?? "", "application/json");
    const r: StatusReport = await res.json();
    assertEquals(r.database.reachable, true);
    assertEquals(r.database.schemaVersion > 0, true);
    assertEquals(r.database.pool.max, 3);
    assertEquals(r.ha.enabled, true);
    assertEquals(r.clustersTotal, 2);
    assertEquals(r.clustersTruncated, false);
    const byName = new Map(r.clusters.map((c) => [c.cluster, c]));
    const prod = byName.get("prod")!;
    assertEquals(prod.leader, "r2");
    assertEquals(prod.leaderChanges24h, 1);
    assertEquals(prod.timeline.map((s) => s.leader), ["r1", "r2"]);
    assert(prod.samples.accepted > 0 && prod.samples.staged > 0, JSON.stringify(prod.samples));
    const evil = byName.get(EVIL_CLUSTER)!;
    assertEquals(evil.leader, "r1");
    assertEquals(evil.leaderChanges24h, 0);
    assert(r.samples.stored > 0);
    assert(r.rates.length >= 1 && r.rates.at(-1)!.ingest > 0, JSON.stringify(r.rates));

    // The page: the hostile name only ever appears escaped.
    const page = await fetch(`${f.connector.url}/`);
    assertEquals(page.status, 200);
    assertStringIncludes(page.headers.get("content-type") ?? "", "text/html");
    assertStringIncludes(page.headers.get("content-security-policy") ?? "", "default-src 'none'");
    const html = await page.text();
    assert(!/<script/i.test(html), "unescaped <script> in the page");
    assertStringIncludes(html, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
    assertStringIncludes(html, "Leader changes, 24 h");

    // The gauges behind the alerts and the dashboard.
    const metrics = await (await fetch(`${f.connector.url}/metrics`)).text();
    assert(/^promscale_db_up 1$/m.test(metrics), "promscale_db_up");
    assert(/^promscale_ingest_newest_sample_timestamp_seconds\{cluster="prod"\} \d/m.test(metrics));
    assert(/^promscale_start_time_seconds \d/m.test(metrics));

    const post = await fetch(`${f.connector.url}/`, { method: "POST", body: "x" });
    await post.body?.cancel();
    assertEquals(post.status, 405);
  } finally {
    await f.close();
  }
});

Deno.test("With authentication on, the status needs it unless --web.auth.ignore-path lists it", async () => {
  const db = await freshDatabase("ops_status_auth");
  const readFile = () => null;
  const auth = ["--web.auth.username=ops", "--web.auth.password=s3cret"];
  try {
    const locked = await inProcessConnector(db.uri, [...HA_FLAGS, ...auth], { readFile });
    try {
      for (const path of ["/", "/api/v1/status/ha"]) {
        const res = await fetch(`${locked.url}${path}`);
        await res.body?.cancel();
        assertEquals(res.status, 401, path);
        const ok = await fetch(`${locked.url}${path}`, { headers: BASIC });
        await ok.body?.cancel();
        assertEquals(ok.status, 200, path);
      }
    } finally {
      await locked.stop();
    }
    const open = await inProcessConnector(
      db.uri,
      [...HA_FLAGS, ...auth, "--web.auth.ignore-path", "/, /api/v1/status/ha"],
      { readFile },
    );
    try {
      for (const path of ["/", "/api/v1/status/ha"]) {
        const res = await fetch(`${open.url}${path}`);
        await res.body?.cancel();
        assertEquals(res.status, 200, path);
      }
      // Only the listed paths: writes and metrics still need credentials.
      assertEquals(await writeHa(open.url, "c", "r1", Date.now()), 401);
      assertEquals(await writeHa(open.url, "c", "r1", Date.now(), BASIC), 204);
      const metrics = await fetch(`${open.url}/metrics`);
      await metrics.body?.cancel();
      assertEquals(metrics.status, 401);
    } finally {
      await open.stop();
    }
  } finally {
    await db.drop();
  }
});

Deno.test("At most 100 clusters are listed, and the page says so", async () => {
  const db = await freshDatabase("ops_status_many");
  try {
    const c = await inProcessConnector(db.uri, HA_FLAGS);
    try {
      await db.sql`
        INSERT INTO _prom_catalog.ha_leases
          (cluster_name, leader_name, lease_start, lease_until, max_time, last_heard)
        SELECT 'c' || lpad(i::text, 3, '0'), 'r1', now() - interval '1 hour', now(), now(), now()
        FROM generate_series(1, 130) i`;
      const r: StatusReport = await (await fetch(`${c.url}/api/v1/status/ha`)).json();
      assertEquals(r.clustersTotal, 130);
      assertEquals(r.clustersTruncated, true);
      assertEquals(r.clusters.length, 100);
      assertEquals(r.clusters[0].cluster, "c001");
      const html = await (await fetch(`${c.url}/`)).text();
      assertStringIncludes(html, "Showing the first 100 of 130 clusters");
    } finally {
      await c.stop();
    }
  } finally {
    await db.drop();
  }
});

Deno.test("Without HA the page renders and says HA is off", async () => {
  const db = await freshDatabase("ops_status_noha");
  try {
    const c = await inProcessConnector(db.uri);
    try {
      const html = await (await fetch(`${c.url}/`)).text();
      assertStringIncludes(html, "High availability is off");
      assertStringIncludes(html, "reachable");
      const r: StatusReport = await (await fetch(`${c.url}/api/v1/status/ha`)).json();
      assertEquals(r.ha.enabled, false);
      assertEquals(r.clusters, []);
    } finally {
      await c.stop();
    }
  } finally {
    await db.drop();
  }
});
