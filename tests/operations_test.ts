/**
 * Operating the connector as a process (`deno run -A main.ts`, as users
 * and scripts run it): its own metrics, health, logs that parse and never
 * hold the password, graceful shutdown with requests in flight,
 * `--startup.only`, and bad configuration refused before listening.
 */
import { postgres } from "../deps.ts";
import { SCHEMA_VERSION } from "../src/storage/migrations/schema.ts";
import { VERSION } from "../src/version.ts";
import { assert, assertEquals, assertStringIncludes } from "./helpers/assert.ts";
import { freshDatabase } from "./helpers/db.ts";
import { writeRequestBody } from "./helpers/payload.ts";
import { freePort } from "./helpers/ports.ts";
import { killAll, type Proc, spawnConnector, startConnector } from "./helpers/procs.ts";

const SNAPPY = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };
const PASSWORD = "Sup3r-S3cret-Pa55word";
const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);

/** `uri` with a password (trust auth ignores it). */
function withPassword(uri: string): string {
  const u = new URL(uri);
  u.password = PASSWORD;
  return u.toString();
}

/** Lines a process wrote to stderr (spawnProcess tags them "err: "). */
function stderrLines(p: Proc): string[] {
  return p.output().split("\n").filter((l) => l.startsWith("err: ")).map((l) => l.slice(5));
}

function stdoutLines(p: Proc): string[] {
  return p.output().split("\n").filter((l) => l.startsWith("out: ")).map((l) => l.slice(5));
}

/** A remote write of `n` series with one sample each at `t`. */
function body(n: number, t: number): Uint8Array<ArrayBuffer> {
  return writeRequestBody(Array.from({ length: n }, (_, i) => ({
    labels: { __name__: "ops_test", job: "ops", idx: String(i) },
    samples: [{ value: i, timestamp: t }],
  }))) as Uint8Array<ArrayBuffer>;
}

/** The value of the sample `name{labels}` in a text exposition, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    const sp = line.lastIndexOf(" ");
    if (line.slice(0, sp) === series) return Number(line.slice(sp + 1));
  }
  return undefined;
}

Deno.test("a running connector serves /metrics and /healthz and logs JSON without the password", async () => {
  const db = await freshDatabase("ops_metrics");
  try {
    const c = await startConnector({
      dbUri: withPassword(db.uri),
      args: [
        "--telemetry.log.format",
        "json",
        "--telemetry.log.level",
        "debug",
        "--db.connections-max",
        "4",
      ],
    });
    const ok = await fetch(`${c.url}/write`, {
      method: "POST",
      headers: SNAPPY,
      body: body(3, T0),
    });
    assertEquals(ok.status, 204, await ok.text());
    const bad = await fetch(`${c.url}/write`, {
      method: "POST",
      headers: SNAPPY,
      body: new Uint8Array([1, 2, 3]),
    });
    assertEquals(bad.status, 400);
    await bad.body?.cancel();

    const health = await fetch(`${c.url}/healthz`);
    assertEquals([health.status, await health.text()], [200, "ok\n"]);

    const res = await fetch(`${c.url}/metrics`);
    assertEquals(res.status, 200);
    assertStringIncludes(res.headers.get("content-type") ?? "", "text/plain; version=0.0.4");
    const text = await res.text();
    const expect: [string, number][] = [
      ['promscale_http_requests_total{code="204",handler="write"}', 1],
      ['promscale_http_requests_total{code="400",handler="write"}', 1],
      ["promscale_ingest_samples_total", 3],
      ["promscale_ingest_series_created_total", 3],
      ['promscale_http_request_duration_seconds_count{handler="write"}', 2],
      ['promscale_http_request_duration_seconds_bucket{handler="write",le="+Inf"}', 2],
      ["promscale_db_connections_in_use", 0],
      ["promscale_db_connections_max", 4],
      ["promscale_migrations_version", SCHEMA_VERSION],
      ["promscale_series_cache_size", 3],
    ];
    for (const [series, value] of expect) {
      assertEquals(sample(text, series), value, `${series} in:\n${text}`);
    }
    // The launcher polled /healthz too.
    assert((sample(text, 'promscale_http_requests_total{code="200",handler="healthz"}') ?? 0) >= 1);
    const build = text.split("\n").find((l) => l.startsWith("promscale_build_info{"));
    assert(build, text);
    assertStringIncludes(build, `version="${VERSION}"`);
    assert(build.endsWith("} 1"), build);
    // Every line is a comment or `name{labels} value`.
    for (const line of text.trimEnd().split("\n")) {
      assert(
        /^# (HELP|TYPE) \w+ /.test(line) ||
          /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.test(line),
        `not exposition format: ${line}`,
      );
    }
    assert(!text.includes(PASSWORD), "/metrics shows the password");

    assertEquals(await c.stop(), 0);
    const lines = stderrLines(c.proc);
    assert(lines.length >= 3, c.proc.output());
    for (const line of lines) {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line);
      } catch {
        throw new Error(`log line is not JSON: ${line}`);
      }
      assert(typeof entry.ts === "string" && typeof entry.msg === "string", line);
      assert(["debug", "info", "warn", "error"].includes(entry.level as string), line);
    }
    const started = lines.map((l) => JSON.parse(l)).find((e) =>
      e.msg === "Promscale connector started"
    );
    assert(started, c.proc.output());
    // The URI is logged (redacted): the check below looks where it could leak.
    assertStringIncludes(String(started.db), db.name);
    assert(!c.proc.output().includes(PASSWORD), `the log shows the password:\n${c.proc.output()}`);
  } finally {
    await killAll();
    await db.drop();
  }
});

Deno.test("a connector that cannot reach its database exits 1 without logging the password", async () => {
  try {
    // The password given as its own flag, with characters a URI must escape.
    const password = "p@ss:w/rd%20?#x";
    const p = spawnConnector([
      "--db.host",
      "127.0.0.1",
      "--db.user",
      "postgres",
      "--db.password",
      password,
      "--db.name",
      `no_such_db_${crypto.randomUUID().slice(0, 8)}`,
      "--web.listen-address",
      `127.0.0.1:${freePort()}`,
      "--db.connection-timeout",
      "1s",
    ]);
    const status = await p.wait();
    const out = p.output();
    assertEquals(status.code, 1, out);
    assertStringIncludes(out, "Cannot start");
    assertStringIncludes(out, "does not exist");
    for (const form of [password, encodeURIComponent(password), "p@ss", "w/rd"]) {
      assert(!out.includes(form), `the log shows the password as "${form}":\n${out}`);
    }
  } finally {
    await killAll();
  }
});

Deno.test("SIGTERM lets requests in flight finish, then the connector exits 0", async () => {
  const db = await freshDatabase("ops_shutdown");
  const locker = postgres(db.uri, { max: 1, onnotice: () => {} });
  try {
    const c = await startConnector({ dbUri: db.uri, args: ["--db.connections-max", "5"] });
    const first = await fetch(`${c.url}/write`, {
      method: "POST",
      headers: SNAPPY,
      body: body(10, T0),
    });
    assertEquals(first.status, 204, await first.text());

    // Hold the samples table so that the next writes wait inside COPY.
    const conn = await locker.reserve();
    await conn`BEGIN`;
    await conn`LOCK TABLE _prom_data.samples IN ACCESS EXCLUSIVE MODE`;
    const inFlight = [1, 2, 3].map((k) =>
      fetch(`${c.url}/write`, { method: "POST", headers: SNAPPY, body: body(10, T0 + k * 1000) })
        .then(async (r) => [r.status, await r.text()] as const)
    );
    const deadline = Date.now() + 20_000;
    while (true) {
      const [{ waiting }] = await db.sql<{ waiting: number }[]>`
        SELECT count(*)::int AS waiting FROM pg_stat_activity
        WHERE datname = ${db.name} AND wait_event_type = 'Lock'
          AND application_name LIKE 'promscale%'`;
      // The writer may combine waiting requests into one COPY: wait for one
      // COPY blocked on the lock and the three requests inside the connector.
      const metrics = await (await fetch(`${c.url}/metrics`)).text();
      const served = Number(/^promscale_http_requests_in_flight (\d+)/m.exec(metrics)?.[1] ?? 0);
      if (waiting >= 1 && served >= 4) break; // the three writes and this scrape
      assert(Date.now() < deadline, `writes never reached the database (${waiting} waiting)`);
      await new Promise((r) => setTimeout(r, 50));
    }

    c.proc.kill("SIGTERM");
    // It stops accepting connections while the three are still in flight.
    while (true) {
      try {
        const probe = await Deno.connect({ hostname: "127.0.0.1", port: c.port });
        probe.close();
      } catch (err) {
        if (err instanceof Deno.errors.ConnectionRefused) break;
        throw err;
      }
      assert(Date.now() < deadline, `still accepting connections:\n${c.proc.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert(!c.proc.exited, `exited with requests in flight:\n${c.proc.output()}`);

    await conn`COMMIT`;
    conn.release();
    const results = await Promise.all(inFlight);
    assertEquals(results, [[204, ""], [204, ""], [204, ""]]);
    const status = await c.proc.wait();
    assertEquals(status.code, 0, c.proc.output());
    assertStringIncludes(c.proc.output(), "Shutdown complete");

    const [{ n }] = await db.sql<
      { n: number }[]
    >`SELECT count(*)::int AS n FROM prom_metric.ops_test`;
    assertEquals(n, 40);
  } finally {
    await locker.end({ timeout: 1 }).catch(() => {});
    await killAll();
    await db.drop();
  }
});

Deno.test("--startup.only migrates and exits 0 without listening", async () => {
  const db = await freshDatabase("ops_startup_only");
  try {
    const port = freePort();
    const p = spawnConnector([
      "--db.uri",
      db.uri,
      "--web.listen-address",
      `127.0.0.1:${port}`,
      "--startup.only",
    ]);
    const status = await p.wait();
    assertEquals(status.code, 0, p.output());
    assertStringIncludes(p.output(), "Startup only");
    assert(!p.output().includes("connector started"), p.output());
    const [{ version }] = await db.sql<{ version: number }[]>`
      SELECT max(version)::int AS version FROM _prom_catalog.migrations`;
    assertEquals(version, SCHEMA_VERSION);
  } finally {
    await killAll();
    await db.drop();
  }
});

Deno.test("bad configuration exits 2 with one line on stderr before listening", async () => {
  try {
    // The database is a closed port: a config error must come before any
    // attempt to connect (no "not reachable" retries) and before listening.
    const deadDb = `postgres://postgres@127.0.0.1:${freePort()}/postgres`;
    const cases: [string[], string][] = [
      [["--no-such-flag"], "no-such-flag"],
      [["--web.read-timeout", "5parsecs"], "5parsecs"],
      [["--telemetry.log.format", "xml"], "xml"],
      [["--auth.tls-cert-file", "/tmp/cert.pem"], "tls"],
      [["--db.connections-max", "many"], "many"],
    ];
    await Promise.all(cases.map(async ([args, mentions]) => {
      const port = freePort();
      const p = spawnConnector([
        "--db.uri",
        deadDb,
        "--web.listen-address",
        `127.0.0.1:${port}`,
        ...args,
      ]);
      const status = await p.wait();
      const what = `${args.join(" ")}:\n${p.output()}`;
      assertEquals(status.code, 2, what);
      assertEquals(stdoutLines(p), [], what);
      const err = stderrLines(p);
      assertEquals(err.length, 1, what);
      assertStringIncludes(err[0].toLowerCase(), mentions, what);
    }));
  } finally {
    await killAll();
  }
});
