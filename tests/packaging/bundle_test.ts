/**
 * The program is self-contained: `deno task compile --bundle` makes one
 * JavaScript file that, copied alone into an empty directory and run there
 * with the compiled executable's permissions (and no config, lock file, npm
 * or remote modules), answers --version and --help, migrates a fresh
 * database, stores a remote write that reads back from prom_metric, and
 * stops cleanly on SIGTERM within the unit's TimeoutStopSec.
 *
 * `deno compile` itself needs a base binary that these machines cannot
 * download (see compile_test.ts); the bundle is the same module graph that
 * `deno compile` embeds.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll, REPO_ROOT, spawnProcess, tempDir, waitForHttp } from "../helpers/procs.ts";
import { RUN_PERMISSIONS } from "../../packaging/compile.ts";
import { VERSION } from "../../src/version.ts";

/** What `deno run` gets: the executable's permissions, nothing from around the file. */
const RUN_FLAGS = [
  ...RUN_PERMISSIONS,
  "--no-prompt",
  "--no-config",
  "--no-lock",
  "--no-npm",
  "--no-remote",
];

/** The unit's TimeoutStopSec, in milliseconds. */
async function timeoutStopMs(): Promise<number> {
  const unit = await Deno.readTextFile(`${REPO_ROOT}/packaging/promscale.service`);
  const m = /^TimeoutStopSec=(\d+)s?$/m.exec(unit);
  assert(m !== null, "packaging/promscale.service has no TimeoutStopSec=<seconds>");
  return Number(m[1]) * 1000;
}

/** Runs `deno run <flags> promscale.js args…` in `dir` with a minimal environment. */
async function runBundle(dir: string, args: string[]) {
  const env: Record<string, string> = { NO_COLOR: "1", PATH: Deno.env.get("PATH") ?? "" };
  for (const name of ["HOME", "DENO_DIR"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) env[name] = v;
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...RUN_FLAGS, "promscale.js", ...args],
    cwd: dir,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("the bundled program runs alone from an empty directory: version, help, migrate, write, read back, SIGTERM", async () => {
  const db = await freshDatabase("pkg_bundle");
  try {
    // Build with the compile task, as a release does.
    const build = await tempDir("promscale-bundle-build-");
    const built = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "packaging/compile.ts",
        "--bundle",
        "--no-check",
        "--output",
        `${build}/promscale.js`,
      ],
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const buildLog = new TextDecoder().decode(built.stdout) +
      new TextDecoder().decode(built.stderr);
    assertEquals(built.code, 0, `deno task compile --bundle failed:\n${buildLog}`);

    // Alone in an empty directory: no source tree, config.yml or node_modules nearby.
    const dir = await tempDir("promscale-bundle-run-");
    await Deno.copyFile(`${build}/promscale.js`, `${dir}/promscale.js`);
    const entries = [...Deno.readDirSync(dir)].map((e) => e.name);
    assertEquals(entries, ["promscale.js"]);
    const code = await Deno.readTextFile(`${dir}/promscale.js`);
    const specifiers = [...code.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"/gm)]
      .map((m) => m[1]);
    assert(specifiers.length > 0, "the bundle imports nothing: did the pattern break?");
    assertEquals(specifiers.filter((s) => !s.startsWith("node:")), []);

    // --version and `version`: version, Deno version and the stamped commit.
    const version = await runBundle(dir, ["--version"]);
    assertEquals(version.code, 0, version.stderr);
    const line = version.stdout.trim();
    const m = new RegExp(
      `^promscale ${VERSION.replaceAll(".", "\\.")} \\(deno ${
        Deno.version.deno.replaceAll(".", "\\.")
      }, commit ([0-9a-f]{12})(-dirty)?\\)$`,
    ).exec(line);
    assert(m !== null, `unexpected --version output: "${line}"`);
    const kind = await new Deno.Command("git", {
      args: ["-C", REPO_ROOT, "cat-file", "-t", m[1]],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(kind.stdout).trim(), "commit");
    const sub = await runBundle(dir, ["version"]);
    assertEquals([sub.code, sub.stdout.trim()], [0, line]);

    const help = await runBundle(dir, ["--help"]);
    assertEquals(help.code, 0, help.stderr);
    for (
      const s of ["Usage: promscale", "--db.uri", "PROMSCALE_DB_URI", "--metrics.high-availability"]
    ) {
      assertStringIncludes(help.stdout, s);
    }

    // --startup.only migrates a fresh database and exits 0.
    const migrated = await runBundle(dir, ["--db.uri", db.uri, "--startup.only"]);
    assertEquals(migrated.code, 0, migrated.stdout + migrated.stderr);
    const [{ leases }] = await db.sql<{ leases: string | null }[]>`
      SELECT to_regclass('_prom_catalog.ha_leases')::text AS leases`;
    assertEquals(leases, "_prom_catalog.ha_leases");

    // Serve, with a password in the URI that must never be logged (the
    // test server trusts local connections and ignores it).
    const uri = new URL(db.uri);
    if (uri.password === "") uri.password = "bundle-secret-9f3";
    const secret = decodeURIComponent(uri.password);
    const port = freePort();
    const proc = spawnProcess("bundled connector", Deno.execPath(), [
      "run",
      ...RUN_FLAGS,
      "promscale.js",
      "--db.uri",
      uri.toString(),
      "--web.listen-address",
      `127.0.0.1:${port}`,
      "--metrics.high-availability",
      "--startup.skip-migrate",
    ], { cwd: dir, env: { NO_COLOR: "1" } });
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/healthz`, { proc, timeoutMs: 60_000 });

    const started = proc.output().split("\n").find((l) =>
      l.includes("Promscale connector started")
    );
    assert(started !== undefined, `no start line:\n${proc.output()}`);
    assertStringIncludes(started, `version=${VERSION}`);
    assertStringIncludes(started, `listen=127.0.0.1:${port}`);
    assertMatch(started, /db=postgres:\/\/[^:@\s]+:\*\*\*\*@/);
    assertStringIncludes(started, "ha=lease");

    // A real remote write from one replica of an HA pair, read back.
    const t0 = Date.now() - 10_000;
    const res = await fetch(`${base}/write`, {
      method: "POST",
      headers: {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
      },
      // A copy, so the body is backed by a plain ArrayBuffer as fetch's types want.
      body: new Uint8Array(writeRequestBody([{
        labels: { __name__: "bundle_probe", job: "bundle", cluster: "c1", __replica__: "r1" },
        samples: [{ timestamp: t0, value: 1.5 }, { timestamp: t0 + 1000, value: -2 }],
      }])),
    });
    const resBody = await res.text();
    assert(res.ok, `write answered ${res.status}: ${resBody}`);
    const rows = await db.sql<{ ms: string; value: number; labels: Record<string, string> }[]>`
      SELECT (extract(epoch FROM time) * 1000)::bigint::text AS ms, value, labels
      FROM prom_metric.bundle_probe ORDER BY time`;
    assertEquals(
      rows.map((r) => [Number(r.ms), r.value, r.labels]),
      [
        [t0, 1.5, { job: "bundle", cluster: "c1" }],
        [t0 + 1000, -2, { job: "bundle", cluster: "c1" }],
      ],
    );

    // The stamped commit also reaches /metrics.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assertMatch(metrics, new RegExp(`promscale_build_info\\{[^}]*commit="${m[1]}`));

    // SIGTERM: a clean exit 0 before systemd would escalate to SIGKILL
    // (which would end it with 137).
    const status = await proc.stop(await timeoutStopMs());
    assertEquals(status.code, 0, proc.output());
    assertStringIncludes(proc.output(), "Shutdown complete");
    assert(!proc.output().includes(secret), "the database password appears in the output");
  } finally {
    await killAll();
    await db.drop();
  }
});
