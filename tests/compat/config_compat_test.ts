/**
 * Promscale's configuration as deployments carry it (issue 20): the Helm
 * chart's default config file, nested YAML, the tuning flags accepted with
 * one warning, the unsupported ones refused with a reason, Go's boolean
 * spellings and the dataset configuration.
 */
import assert from "node:assert/strict";
import { type Config, ConfigError, ConfigExit, parseConfig } from "../../src/config.ts";
import { COMPAT_FLAGS } from "../../src/config_compat.ts";

const HELM = Deno.readTextFileSync(new URL("./fixtures/helm_default_config.yaml", import.meta.url));

function parse(
  argv: string[],
  env: Record<string, string> = {},
  files: Record<string, string> = {},
): Config {
  return parseConfig(argv, env, (path) => files[path] ?? null);
}

function refused(argv: string[], files: Record<string, string> = {}): string {
  try {
    parse(argv, {}, files);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.ok(!err.message.includes("\n"), "one line");
    return err.message;
  }
  throw new Error(`accepted: ${JSON.stringify(argv)}`);
}

Deno.test("the Helm chart's default config starts the connector: retention mapped, the rest warned", () => {
  const c = parse([], {}, { "config.yml": HELM });
  assert.equal(c.configFile, "config.yml");
  assert.equal(c.dataset.defaultRetentionMs, 90 * 86_400_000);
  assert.deepEqual(c.warnings, [
    "Dataset configuration metrics.compress_data ignored: compression is not managed by the connector",
    "Dataset configuration traces.default_retention_period ignored: traces are not stored here",
  ]);
  // Its environment form, as `extraEnv` would set it.
  const text = HELM.replace(/^[\s\S]*?\|\n/, "").replace(/^ {2}/gm, "");
  const e = parse([], { PROMSCALE_STARTUP_DATASET_CONFIG: text });
  assert.equal(e.dataset.defaultRetentionMs, 90 * 86_400_000);
  assert.equal(e.warnings.length, 2);
});

Deno.test("startup.dataset.config: HA lease settings reach the config unless their flags are given", () => {
  const yaml = "metrics:\n  ha_lease_timeout: 2m\n  ha_lease_refresh: 15s\n" +
    "  default_retention_period: 30d\n  default_chunk_interval: 6h\n";
  const c = parse(["--startup.dataset.config", yaml]);
  assert.equal(c.metrics.ha.leaseTimeoutMs, 120_000);
  assert.equal(c.metrics.ha.leaseRefreshMs, 15_000);
  assert.equal(c.dataset.defaultRetentionMs, 30 * 86_400_000);
  assert.deepEqual(c.warnings, [
    "Dataset configuration metrics.default_chunk_interval ignored: samples are stored in daily partitions",
  ]);

  const f = parse(["--metrics.high-availability.lease-timeout=3m"], {
    PROMSCALE_METRICS_HIGH_AVAILABILITY_LEASE_REFRESH: "5s",
  }, { "config.yml": `startup.dataset.config: |\n  ${yaml.replaceAll("\n", "\n  ")}` });
  assert.equal(f.metrics.ha.leaseTimeoutMs, 180_000);
  assert.equal(f.metrics.ha.leaseRefreshMs, 5_000);
  assert.ok(f.warnings.includes(
    "Dataset configuration metrics.ha_lease_timeout overridden by --metrics.high-availability.lease-timeout",
  ));

  // Promscale 0.17's nested form in config.yml.
  const n = parse([], {}, {
    "config.yml": "startup:\n  dataset:\n    metrics:\n      ha_lease_timeout: 90s\n" +
      "      default_retention_period: 1d12h\n",
  });
  assert.equal(n.metrics.ha.leaseTimeoutMs, 90_000);
  assert.equal(n.dataset.defaultRetentionMs, 36 * 3_600_000);
  assert.equal(parse([]).dataset.defaultRetentionMs, null);

  assert.match(
    refused(["--startup.dataset.config", "metrics:\n  default_retention_period: forever\n"]),
    /^Invalid dataset configuration --startup\.dataset\.config: metrics\.default_retention_period "forever": not a duration$/,
  );
  assert.match(refused(["--startup.dataset.config", "- a"]), /must be a map/);
  // The lease rules still hold for values from the dataset configuration.
  assert.match(
    refused(["--startup.dataset.config", "metrics:\n  ha_lease_refresh: 5m\n"]),
    /lease-refresh \(5m\) must be shorter/,
  );
});

Deno.test("nested YAML maps are flattened with dots; a dotted key wins", () => {
  const c = parse([], {}, {
    "config.yml": [
      "web:",
      "  listen-address: 127.0.0.1:9300",
      "  auth:",
      "    ignore-path: [/, /api/v1/status/ha]",
      "db:",
      "  host: db1",
      "  port: 6543",
      "  ssl-mode: disable",
      "metrics:",
      "  high-availability: true",
      "  high-availability.cluster-label: group",
      "telemetry:",
      "  log:",
      "    level: warn",
      "db.host: db2",
    ].join("\n"),
  });
  assert.equal(c.web.listenAddress, "127.0.0.1:9300");
  assert.deepEqual(c.web.authIgnorePaths, ["/", "/api/v1/status/ha"]);
  assert.equal(c.db.host, "db2");
  assert.equal(c.db.port, 6543);
  assert.equal(c.db.sslMode, "disable");
  assert.equal(c.metrics.ha.enabled, true);
  assert.equal(c.metrics.ha.clusterLabel, "group");
  assert.equal(c.telemetry.logLevel, "warn");
  assert.deepEqual(c.warnings, []);
  assert.equal(
    refused([], { "config.yml": "web:\n  listen-adress: x\n" }),
    'Unknown key "web.listen-adress" in config file "config.yml"',
  );
});

Deno.test("each accepted Promscale flag gives exactly one warning, as flag, variable or file key", () => {
  assert.equal(COMPAT_FLAGS.length, 24);
  const sample = (kind: string) =>
    kind === "bool" ? "f" : kind === "int" ? "4" : kind === "duration" ? "10m" : "50%";
  for (const f of COMPAT_FLAGS) {
    const v = sample(f.kind);
    const env = "PROMSCALE_" + f.name.toUpperCase().replace(/[.-]/g, "_");
    const ways: Config[] = [
      parse([`--${f.name}=${v}`]),
      parse([`-${f.name}`, ...(f.kind === "bool" ? [] : [v])]),
      parse([], { [env]: v }),
      parse([], {}, { "config.yml": `${f.name}: "${v}"` }),
      // All three at once still warn once.
      parse([`--${f.name}=${v}`], { [env]: v }, { "config.yml": `${f.name}: "${v}"` }),
    ];
    for (const c of ways) {
      assert.equal(c.warnings.length, 1, `${f.name}: ${JSON.stringify(c.warnings)}`);
      assert.ok(
        c.warnings[0].startsWith(`--${f.name} is accepted for compatibility with Promscale`),
        c.warnings[0],
      );
    }
  }
  // Still validated by type.
  assert.match(
    refused(["--db.statements-cache=maybe"]),
    /^Invalid value "maybe" for --db\.statements-cache: not a boolean/,
  );
  // --web.auth.ignore-path is implemented, not merely accepted.
  const c = parse(["--web.auth.ignore-path=/"]);
  assert.deepEqual(c.web.authIgnorePaths, ["/"]);
  assert.deepEqual(c.warnings, []);
});

Deno.test("flags of features not here still fail, with a one-line reason", () => {
  const cases: [string, RegExp][] = [
    ["--metrics.rules.config-file=rules.yml", /rules and alerts are not evaluated/],
    ["-tracing.async-acks", /traces are not stored/],
    ["--metrics.multi-tenancy", /multi-tenancy/],
    ["--db.read-only", /read-only/],
    ["--web.enable-admin-api", /admin API/],
    ["--thanos.store-api.server-address=:9203", /Thanos/],
  ];
  for (const [arg, reason] of cases) {
    const msg = refused([arg]);
    assert.match(msg, /^Flag "--[a-z.-]+" is not supported: /);
    assert.match(msg, reason);
  }
  assert.match(
    refused([], { "config.yml": "metrics:\n  rules:\n    config-file: rules.yml\n" }),
    /^Key "metrics\.rules\.config-file" in config file "config\.yml" is not supported: /,
  );
  let help = "";
  try {
    parse(["--help"]);
  } catch (err) {
    help = (err as ConfigExit).output;
  }
  assert.match(help, /Promscale flags of features not here \(exit status 2\):/);
  assert.match(help, /--db\.statements-cache\[=bool\]\n\s+Ignored: /);
});

Deno.test("booleans take Go's strconv.ParseBool forms in flags, variables and the file", () => {
  for (const t of ["1", "t", "T", "TRUE", "true", "True"]) {
    assert.equal(parse([`--metrics.high-availability=${t}`]).metrics.ha.enabled, true, t);
    assert.equal(
      parse([], { PROMSCALE_METRICS_HIGH_AVAILABILITY: t }).metrics.ha.enabled,
      true,
      t,
    );
    assert.equal(parse([`-metrics.async-acks=${t}`]).metrics.asyncAcks, true, t);
  }
  for (const f of ["0", "f", "F", "FALSE", "false", "False"]) {
    assert.equal(
      parse([`--metrics.high-availability=${f}`], { PROMSCALE_METRICS_HIGH_AVAILABILITY: "t" })
        .metrics.ha.enabled,
      false,
      f,
    );
    assert.equal(parse([], { PROMSCALE_STARTUP_ONLY: f }).startup.only, false, f);
  }
  assert.equal(
    parse([], {}, { "config.yml": "metrics.high-availability: t" }).metrics.ha.enabled,
    true,
  );
});
