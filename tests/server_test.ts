/**
 * The router (src/server.ts) on its own, through `new Request(...)`: which
 * path goes where, /healthz from the probe's state (503 through the one
 * error path, with Retry-After), the in-flight cap, and request metrics.
 */
import { router, type Routes } from "../src/server.ts";
import { ConnectorMetrics } from "../src/telemetry/metrics.ts";
import { Logger } from "../src/telemetry/log.ts";
import type { HealthState } from "../src/health.ts";
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";

function setup(extra: Partial<Routes> = {}) {
  const metrics = new ConnectorMetrics();
  const logs: string[] = [];
  let health: HealthState = { ok: true, reason: "" };
  const seen: string[] = [];
  const handle = router(
    {
      write: (req) => {
        seen.push(`write ${new URL(req.url).pathname}`);
        return Promise.resolve(new Response(null, { status: 204 }));
      },
      health: () => health,
      telemetryPath: "/metrics",
      maxInFlight: 4,
      ...extra,
    },
    metrics,
    new Logger("info", "json", (line) => logs.push(line)),
  );
  return {
    metrics,
    logs,
    seen,
    handle,
    setHealth: (h: HealthState) => (health = h),
    get: (path: string, init?: RequestInit) => handle(new Request(`http://connector${path}`, init)),
  };
}

Deno.test("router() sends /write and /api/v1/write to the write handler, unknown paths 404", async () => {
  const s = setup();
  assertEquals((await s.get("/write", { method: "POST" })).status, 204);
  assertEquals((await s.get("/api/v1/write", { method: "POST" })).status, 204);
  assertEquals(s.seen, ["write /write", "write /api/v1/write"]);
  const missing = await s.get("/api/v1/push", { method: "POST" });
  assertEquals(missing.status, 404);
  assertStringIncludes(await missing.text(), "/api/v1/push");
  const read = await s.get("/read", { method: "POST" });
  assertEquals(read.status, 404, "remote read is off without a read handler");
  await read.body?.cancel();
});

Deno.test("router() answers /healthz from the probe: 200 ok, else 503 with Retry-After and one line", async () => {
  const s = setup();
  const ok = await s.get("/healthz");
  assertEquals(ok.status, 200);
  assertEquals(await ok.text(), "ok\n");
  s.setHealth({ ok: false, reason: "database not answering: last successful probe 5000 ms ago" });
  const down = await s.get("/healthz");
  assertEquals(down.status, 503);
  assertEquals(down.headers.get("retry-after"), "1");
  assertStringIncludes(down.headers.get("content-type") ?? "", "text/plain");
  assertEquals(await down.text(), "database not answering: last successful probe 5000 ms ago\n");
});

Deno.test("router() refuses writes beyond --web.max-in-flight with 503 and Retry-After", async () => {
  const release = Promise.withResolvers<void>();
  const s = setup({
    maxInFlight: 1,
    write: async () => {
      await release.promise;
      return new Response(null, { status: 204 });
    },
  });
  const first = s.get("/write", { method: "POST" });
  const second = await s.get("/write", { method: "POST" });
  assertEquals(second.status, 503);
  assertEquals(second.headers.get("retry-after"), "1");
  assertStringIncludes(await second.text(), "Too many requests in flight (limit 1)");
  // /healthz takes no slot: it answers while the write is stuck.
  assertEquals((await s.get("/healthz")).status, 200);
  release.resolve();
  assertEquals((await first).status, 204);
  assertEquals((await s.get("/write", { method: "POST" })).status, 204);
});

Deno.test("router() counts requests by handler and code on the telemetry path", async () => {
  const s = setup();
  await s.get("/write", { method: "POST" });
  await (await s.get("/nope")).body?.cancel();
  const res = await s.get("/metrics");
  assertEquals(res.status, 200);
  const text = await res.text();
  assert(text.includes('promscale_http_requests_total{code="204",handler="write"} 1'), text);
  assert(text.includes('promscale_http_requests_total{code="404",handler="other"} 1'), text);
});
