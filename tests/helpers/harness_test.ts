/**
 * Self-test of the test harness: processes are captured and cleaned up,
 * node_exporter serves metrics, HAProxy spreads requests per request and
 * routes around a dead backend, throwaway databases come and go.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { freshDatabase, PG_ADMIN_URI } from "./db.ts";
import { freePort } from "./ports.ts";
import {
  killAll,
  spawnProcess,
  startHaproxy,
  startNodeExporter,
  tempDir,
  waitForHttp,
} from "./procs.ts";
import { prometheusConfig } from "./prometheus.ts";
import { postgres } from "../../deps.ts";

/** A tiny HTTP backend answering its name on every path. */
function backend(name: string) {
  const hits: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) => {
      const path = new URL(req.url).pathname;
      if (path !== "/healthz") hits.push(path);
      return new Response(name);
    },
  );
  return { name, hits, server, address: `127.0.0.1:${server.addr.port}` };
}

/** Sends `n` GET requests over one keep-alive TCP connection; returns the bodies. */
async function getOverOneConnection(port: number, n: number): Promise<string[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const bodies: string[] = [];
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(64 * 1024);
  try {
    for (let i = 0; i < n; i++) {
      await conn.write(enc.encode(`GET /r${i} HTTP/1.1\r\nHost: test\r\n\r\n`));
      while (true) {
        const text = dec.decode(buf);
        const end = text.indexOf("\r\n\r\n");
        if (end >= 0) {
          const head = text.slice(0, end);
          const len = Number(/content-length:\s*(\d+)/i.exec(head)?.[1]);
          assert(Number.isFinite(len), `response without content-length:\n${head}`);
          if (buf.length >= end + 4 + len) {
            assertStringIncludes(head.split("\r\n")[0], " 200 ");
            assert(!/connection:\s*close/i.test(head), "proxy closed the client connection");
            bodies.push(dec.decode(buf.slice(end + 4, end + 4 + len)));
            buf = buf.slice(end + 4 + len);
            break;
          }
        }
        const r = await conn.read(chunk);
        if (r === null) throw new Error(`connection closed after ${bodies.length} responses`);
        const next = new Uint8Array(buf.length + r);
        next.set(buf);
        next.set(chunk.subarray(0, r), buf.length);
        buf = next;
      }
    }
  } finally {
    conn.close();
  }
  return bodies;
}

Deno.test("freePort() returns a port that can be bound", () => {
  const port = freePort();
  const l = Deno.listen({ hostname: "127.0.0.1", port });
  l.close();
  assert(port > 0);
});

Deno.test("spawnProcess() keeps the last 200 lines and killAll() stops what is left", async () => {
  try {
    const chatty = spawnProcess("chatty", "bash", [
      "-c",
      "for i in $(seq 1 300); do echo out $i; done; echo err done >&2",
    ]);
    const status = await chatty.wait();
    assertEquals(status.code, 0);
    const lines = chatty.output().split("\n");
    assertEquals(lines.length, 200);
    assert(lines.includes("out: out 300"));
    assert(!lines.includes("out: out 100"));
    assert(lines.includes("err: err done"));

    const sleeper = spawnProcess("sleeper", "sleep", ["60"]);
    const stubborn = spawnProcess("stubborn", "bash", [
      "-c",
      "trap '' TERM; echo ready; exec sleep 60",
    ]);
    // Only once the trap is set does SIGTERM leave it running (on a loaded
    // machine bash may not have got that far yet).
    for (let i = 0; i < 200 && !stubborn.output().includes("ready"); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    const dir = await tempDir();
    await Deno.writeTextFile(`${dir}/x`, "x");
    await killAll(500);
    assert(sleeper.exited && stubborn.exited);
    assertEquals((await sleeper.wait()).signal, "SIGTERM");
    assertEquals((await stubborn.wait()).signal, "SIGKILL");
    await assertRejects(() => Deno.stat(dir), Deno.errors.NotFound);
  } finally {
    await killAll();
  }
});

Deno.test("spawnProcess() names the command it cannot start", () => {
  let message = "";
  try {
    spawnProcess("ghost", "/nonexistent/ghost", []);
  } catch (err) {
    message = (err as Error).message;
  }
  assertStringIncludes(message, "Cannot start ghost");
});

Deno.test("waitForHttp() fails at once with the output of a process that exited", async () => {
  try {
    const proc = spawnProcess("quitter", "bash", ["-c", "echo giving up; exit 3"]);
    const err = await assertRejects(() =>
      waitForHttp(`http://127.0.0.1:${freePort()}/`, { timeoutMs: 30_000, proc })
    );
    assertStringIncludes(err.message, "exited with code 3");
    assertStringIncludes(err.message, "giving up");
  } finally {
    await killAll();
  }
});

Deno.test("startNodeExporter() serves node metrics", async () => {
  try {
    const ne = await startNodeExporter();
    const res = await fetch(`${ne.url}/metrics`);
    const text = await res.text();
    assertStringIncludes(text, "node_cpu_seconds_total");
    assertStringIncludes(text, "node_load1");
    await ne.stop();
    assert(ne.proc.exited);
  } finally {
    await killAll();
  }
});

Deno.test("startHaproxy() balances per request and routes around a dead backend", async () => {
  const a = backend("a");
  const b = backend("b");
  try {
    const lb = await startHaproxy([a.address, b.address]);
    const bodies = await getOverOneConnection(lb.port, 10);
    assertEquals(bodies.filter((x) => x === "a").length, 5, bodies.join(","));
    assertEquals(bodies.filter((x) => x === "b").length, 5, bodies.join(","));
    assertEquals(a.hits.length + b.hits.length, 10);
    assertEquals(await lb.backendStatus(), { [a.address]: "UP", [b.address]: "UP" });

    // Backend a dies: requests that would have gone to it are retried on b.
    await a.server.shutdown();
    const after = await getOverOneConnection(lb.port, 6);
    assertEquals(after, ["b", "b", "b", "b", "b", "b"]);

    // …and the health checks take it out.
    const deadline = Date.now() + 5_000;
    while ((await lb.backendStatus())[a.address] !== "DOWN") {
      assert(Date.now() < deadline, `backend a never marked DOWN:\n${lb.proc.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await lb.stop();
    assert(lb.proc.exited);
  } finally {
    await killAll();
    await a.server.shutdown();
    await b.server.shutdown();
  }
});

Deno.test("freshDatabase() creates a database and drop() removes it", async () => {
  const db = await freshDatabase("Harness-Self Test");
  let dropped = false;
  try {
    assert(/^harness_self_test_[0-9a-f]{12}$/.test(db.name), db.name);
    const [{ current_database }] = await db.sql`SELECT current_database()`;
    assertEquals(current_database, db.name);
    // A connection the test forgot about does not stop the drop.
    const straggler = postgres(db.uri, { max: 1, onnotice: () => {} });
    await straggler`SELECT 1`;
    await db.drop();
    dropped = true;
    await straggler.end({ timeout: 1 }).catch(() => {});
    const admin = postgres(PG_ADMIN_URI, { max: 1, onnotice: () => {} });
    try {
      const rows = await admin`SELECT 1 FROM pg_database WHERE datname = ${db.name}`;
      assertEquals(rows.length, 0);
    } finally {
      await admin.end();
    }
  } finally {
    if (!dropped) await db.drop();
  }
});

Deno.test("prometheusConfig() scrapes job node and writes with fast retries", () => {
  const cfg = prometheusConfig({
    scrapeTargets: ["127.0.0.1:9100"],
    remoteWriteUrl: "http://127.0.0.1:9201/write",
    externalLabels: { cluster: "c1", __replica__: "r1" },
    queueConfig: { max_backoff: "5s" },
    extraConfig: { scrape_configs: [{ job_name: "self" }] },
  });
  assertEquals(cfg.global, {
    scrape_interval: "1s",
    evaluation_interval: "1s",
    external_labels: { cluster: "c1", __replica__: "r1" },
  });
  assertEquals(cfg.remote_write, [{
    url: "http://127.0.0.1:9201/write",
    queue_config: { batch_send_deadline: "1s", min_backoff: "100ms", max_backoff: "5s" },
  }]);
  assertEquals((cfg.scrape_configs as { job_name: string }[]).map((s) => s.job_name), [
    "node",
    "self",
  ]);
});
