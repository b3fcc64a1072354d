/**
 * The Helm chart's default configuration file starts the real executable
 * against PostgreSQL: /healthz answers, the dataset retention reached the
 * database, and an unsupported-feature flag exits 2 with one line.
 */
import assert from "node:assert/strict";
import { freshDatabase } from "../helpers/db.ts";
import { freePort } from "../helpers/ports.ts";

import { connectorCommand } from "../helpers/procs.ts";
const HELM = new URL("./fixtures/helm_default_config.yaml", import.meta.url).pathname;

Deno.test("main.ts starts with the Helm chart's default config.yaml and answers /healthz", async () => {
  const db = await freshDatabase("compat_helm");
  const port = freePort();
  const c = connectorCommand(["--config", HELM], {
    env: {
      PROMSCALE_DB_URI: db.uri,
      PROMSCALE_WEB_LISTEN_ADDRESS: `127.0.0.1:${port}`,
      PROMSCALE_DB_CONNECTIONS_MAX: "3",
      PROMSCALE_DB_STATEMENTS_CACHE: "f",
    },
  });
  const child = new Deno.Command(c.cmd, {
    args: c.args,
    cwd: c.cwd,
    env: c.env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  try {
    let ok = false;
    for (let i = 0; i < 300 && !ok; i++) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        ok = res.status === 200 && (await res.text()) === "ok\n";
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(ok, "/healthz never answered ok");
    const [{ days }] = await db.sql<{ days: number }[]>`
      SELECT extract(epoch FROM _prom_catalog.get_default_retention_period())::float8 / 86400 AS days`;
    assert.equal(days, 90);
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    const [out, err] = await output;
    await db.drop();
    const logs = out + err;
    assert.equal(status.code, 0, logs);
    for (
      const w of [
        "metrics.compress_data ignored",
        "traces.default_retention_period ignored",
        "--db.statements-cache is accepted for compatibility",
        // 90 days is also the schema's default: the log shows it was applied.
        "Default retention set from the dataset configuration",
      ]
    ) {
      assert.equal(logs.split(w).length - 1, 1, `one warning "${w}" in:\n${logs}`);
    }
  }
});

Deno.test("main.ts exits 2 with one line for a flag of a feature not here", async () => {
  const c = connectorCommand(["--metrics.rules.config-file=rules.yml"], {
    env: { PROMSCALE_CONFIG: HELM },
  });
  const { code, stdout, stderr } = await new Deno.Command(c.cmd, {
    args: c.args,
    cwd: c.cwd,
    env: c.env,
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 2);
  assert.equal(new TextDecoder().decode(stdout), "");
  assert.match(
    err,
    /^promscale: Flag "--metrics\.rules\.config-file" is not supported: [^\n]+\n$/,
  );
});
