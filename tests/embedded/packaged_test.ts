/**
 * The packaged program carries the embedded database: `deno task compile
 * --bundle` puts PGlite's WebAssembly and data files in `pglite/` beside
 * promscale.js, and the bundle, copied with them into an empty directory and
 * run with the executable's permissions and no database settings, stores a
 * remote write that reads back through SQL on the served port.
 *
 * `deno compile` cannot get its base binary on these machines; what it
 * includes (`--include` of the same `pglite/` directory beside
 * src/storage/embedded_assets.ts) is loaded by the same code, checked here
 * in process.
 */
import { postgres } from "../../deps.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { writeRequestBody } from "../helpers/payload.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll, REPO_ROOT, spawnProcess, tempDir, waitForHttp } from "../helpers/procs.ts";
import { copyPgliteAssets, RUN_PERMISSIONS } from "../../packaging/compile.ts";
import { PGLITE_ASSETS, shippedAssets } from "../../src/storage/embedded_assets.ts";
import { loadPglite } from "../../deps.ts";
import { PG_NOWHERE } from "./connector.ts";

Deno.test({
  name:
    "shippedAssets() loads the copies packaging puts beside the program, and PGlite runs on them",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    try {
      const dir = await tempDir("promscale-assets-");
      assertEquals(await shippedAssets(new URL(`file://${dir}/pglite/`)), {});
      const to = await copyPgliteAssets(dir);
      assertEquals(to, `${dir}/pglite`);
      const assets = await shippedAssets(new URL(`file://${to}/`));
      assert(assets.pgliteWasmModule instanceof WebAssembly.Module);
      assert(assets.initdbWasmModule instanceof WebAssembly.Module);
      assertEquals(assets.fsBundle?.size, (await Deno.stat(`${to}/pglite.data`)).size);
      const { PGlite } = await loadPglite();
      const db = await PGlite.create(`${dir}/data`, assets);
      try {
        const { rows } = await db.query<{ v: string }>("SELECT version() AS v");
        assertStringIncludes(rows[0].v, "PostgreSQL");
      } finally {
        await db.close();
      }
      for (const f of PGLITE_ASSETS) assert((await Deno.stat(`${to}/${f}`)).size > 0);
    } finally {
      await killAll();
    }
  },
});

Deno.test({
  name: "the bundle with pglite/ beside it runs the embedded database from an empty directory",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    try {
      const build = await tempDir("promscale-bundle-");
      const res = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "packaging/compile.ts",
          "--bundle",
          "--output",
          `${build}/promscale.js`,
        ],
        cwd: REPO_ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      assertEquals(res.code, 0, dec.decode(res.stdout) + dec.decode(res.stderr));
      const run = await tempDir("promscale-bundle-run-");
      await Deno.copyFile(`${build}/promscale.js`, `${run}/promscale.js`);
      await Deno.mkdir(`${run}/pglite`);
      for (const f of PGLITE_ASSETS) {
        await Deno.copyFile(`${build}/pglite/${f}`, `${run}/pglite/${f}`);
      }

      const port = freePort();
      const sqlPort = freePort();
      const env: Record<string, string> = { NO_COLOR: "1", ...PG_NOWHERE };
      for (const name of ["HOME", "DENO_DIR", "PATH"]) {
        const v = Deno.env.get(name);
        if (v !== undefined) env[name] = v;
      }
      const proc = spawnProcess("bundle", Deno.execPath(), [
        "run",
        ...RUN_PERMISSIONS,
        "--no-prompt",
        "--no-config",
        "--no-lock",
        "--no-npm",
        "--no-remote",
        "promscale.js",
        "--web.listen-address",
        `127.0.0.1:${port}`,
        "--db.embedded-sql-listen",
        `127.0.0.1:${sqlPort}`,
      ], { cwd: run, env });
      const url = `http://127.0.0.1:${port}`;
      await waitForHttp(`${url}/healthz`, { timeoutMs: 180_000, proc });
      assertStringIncludes(proc.output(), "Embedded database in use");
      const w = await fetch(`${url}/write`, {
        method: "POST",
        headers: { "content-encoding": "snappy", "content-type": "application/x-protobuf" },
        body: writeRequestBody([{
          labels: { __name__: "bundled_up", job: "b" },
          samples: [{ value: 1, timestamp: Date.now() - 60_000 }],
        }]) as Uint8Array<ArrayBuffer>,
      });
      assertEquals(w.status, 204, await w.text());
      const sql = postgres(`postgres://postgres@127.0.0.1:${sqlPort}/postgres`, {
        max: 1,
        onnotice: () => {},
      });
      try {
        const rows = await sql<{ value: number; job: string }[]>`
          SELECT value, job FROM prom_metric.bundled_up`;
        assertEquals(rows.map((r) => [r.value, r.job]), [[1, "b"]]);
      } finally {
        await sql.end({ timeout: 5 });
      }
      assertEquals((await proc.stop()).code, 0, proc.output());
    } finally {
      await killAll();
    }
  },
});
