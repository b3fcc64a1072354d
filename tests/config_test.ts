import assert from "node:assert/strict";
import {
  type Config,
  ConfigError,
  ConfigExit,
  loadConfig,
  parseBytes,
  parseConfig,
  parseDuration,
  redactUri,
  versionLine,
} from "../src/config.ts";
import { COMMIT, VERSION } from "../src/version.ts";

/** parseConfig with an in-memory file system (path → text). */
function parse(
  argv: string[],
  env: Record<string, string> = {},
  files: Record<string, string> = {},
): Config {
  return parseConfig(argv, env, (path) => files[path] ?? null);
}

/** Asserts that parsing fails with a ConfigError whose message matches. */
function rejects(
  argv: string[],
  message: string | RegExp,
  env: Record<string, string> = {},
  files: Record<string, string> = {},
): void {
  assert.throws(() => parse(argv, env, files), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.ok(!err.message.includes("\n"), "error message must be one line");
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

/** Runs parseConfig expecting a ConfigExit and returns it. */
function exit(argv: string[], env: Record<string, string> = {}): ConfigExit {
  try {
    parse(argv, env);
  } catch (err) {
    if (err instanceof ConfigExit) return err;
    throw err;
  }
  throw new Error(`no ConfigExit for ${JSON.stringify(argv)}`);
}

Deno.test("parseConfig() fills every field with its default", () => {
  const c = parse([]);
  assert.deepEqual(c, {
    configFile: "",
    web: {
      listenAddress: ":9201",
      hostname: "0.0.0.0",
      port: 9201,
      telemetryPath: "/metrics",
      authUsername: "",
      authPassword: "",
      authBearerToken: "",
      authIgnorePaths: [],
      tlsCertFile: "",
      tlsKeyFile: "",
      maxRequestBytes: 32 * 1024 * 1024,
      maxDecodedBytes: 64 * 1024 * 1024,
      maxInFlight: 64,
      maxInFlightReads: 8,
      maxSeriesPerRequest: 200_000,
      maxLabelsPerRequest: 4_000_000,
      maxInFlightMemory: 1024 * 1024 * 1024,
      readTimeoutMs: 30_000,
    },
    db: {
      uri: "postgres://postgres@localhost:5432/postgres?sslmode=prefer",
      host: "localhost",
      port: 5432,
      user: "postgres",
      password: "",
      name: "postgres",
      sslMode: "prefer",
      app: `promscale@${VERSION}`,
      connectionsMax: 0,
      connectionTimeoutMs: 60_000,
      statementTimeoutMs: 60_000,
      embedded: { dir: "./promscale-data", sqlListen: null },
    },
    metrics: {
      asyncAcks: false,
      seriesCacheMax: 500_000,
      maxClusterLabelValues: 1000,
      ha: {
        enabled: false,
        clusterLabel: "cluster",
        replicaLabel: "__replica__",
        leaseTimeoutMs: 60_000,
        leaseRefreshMs: 10_000,
        failoverTimeoutMs: 30_000,
        timingsFromDatabase: { leaseTimeout: true, leaseRefresh: true },
      },
      promql: {
        queryTimeoutMs: 120_000,
        maxSamples: 50_000_000,
        lookbackDeltaMs: 300_000,
        maxPointsPerTs: 11_000,
        subqueryStepMs: 60_000,
        maxConcurrency: 20,
      },
    },
    legacyElection: { advisoryLockId: null, prometheusTimeoutMs: 0 },
    telemetry: { logLevel: "info", logFormat: "logfmt" },
    startup: { only: false, skipMigrate: false },
    storage: { compressAfterMs: 3_600_000 },
    dataset: { defaultRetentionMs: null, haLeaseTimeoutMs: null, haLeaseRefreshMs: null },
    warnings: [],
  });
});

Deno.test("parseConfig() reads every kind of flag from the command line", () => {
  const c = parse([
    "--web.listen-address=127.0.0.1:9301",
    "--web.telemetry-path",
    "/m",
    "--web.max-request-size=16MiB",
    "--web.max-decoded-size",
    "1GiB",
    "--web.max-in-flight-requests=8",
    "--web.read-timeout=5s",
    "--db.host=db.example",
    "--db.port=6543",
    "--db.user=prom",
    "--db.password=p@ss:w/rd",
    "--db.name=metrics db",
    "--db.ssl-mode=verify-full",
    "--db.app=me",
    "--db.connections-max=20",
    "--db.connection-timeout=2s",
    "--db.statement-timeout=0",
    "--metrics.async-acks",
    "--metrics.cache.series.max-size=1000",
    "--metrics.high-availability",
    "--metrics.high-availability.cluster-label=group",
    "--metrics.high-availability.replica-label=replica",
    "--metrics.high-availability.lease-timeout=2m",
    "--metrics.high-availability.lease-refresh=5s",
    "--metrics.high-availability.failover-timeout=1m30s",
    "--telemetry.log.level=debug",
    "--telemetry.log.format=json",
    "--startup.only",
  ]);
  assert.equal(c.web.hostname, "127.0.0.1");
  assert.equal(c.web.port, 9301);
  assert.equal(c.web.telemetryPath, "/m");
  assert.equal(c.web.maxRequestBytes, 16 * 2 ** 20);
  assert.equal(c.web.maxDecodedBytes, 2 ** 30);
  assert.equal(c.web.maxInFlight, 8);
  assert.equal(c.web.readTimeoutMs, 5000);
  assert.equal(
    c.db.uri,
    "postgres://prom:p%40ss%3Aw%2Frd@db.example:6543/metrics%20db?sslmode=verify-full",
  );
  assert.equal(c.db.password, "p@ss:w/rd");
  assert.equal(c.db.app, "me");
  assert.equal(c.db.connectionsMax, 20);
  assert.equal(c.db.connectionTimeoutMs, 2000);
  assert.equal(c.db.statementTimeoutMs, 0);
  assert.equal(c.metrics.asyncAcks, true);
  assert.equal(c.metrics.seriesCacheMax, 1000);
  assert.deepEqual(c.metrics.ha, {
    enabled: true,
    clusterLabel: "group",
    replicaLabel: "replica",
    leaseTimeoutMs: 120_000,
    leaseRefreshMs: 5000,
    failoverTimeoutMs: 90_000,
    timingsFromDatabase: { leaseTimeout: false, leaseRefresh: false },
  });
  assert.deepEqual(c.telemetry, { logLevel: "debug", logFormat: "json" });
  assert.deepEqual(c.startup, { only: true, skipMigrate: false });
  assert.deepEqual(c.warnings, []);
});

Deno.test("parseConfig() takes a flag over env over file over default", () => {
  const files = { "config.yml": "db.host: from-file\ndb.name: file-db\ndb.user: file-user\n" };
  const env = { PROMSCALE_DB_HOST: "from-env", PROMSCALE_DB_NAME: "env-db" };

  const fileOnly = parse([], {}, files);
  assert.equal(fileOnly.configFile, "config.yml");
  assert.equal(fileOnly.db.host, "from-file");
  assert.equal(fileOnly.db.port, 5432); // default

  const envOverFile = parse([], env, files);
  assert.equal(envOverFile.db.host, "from-env");
  assert.equal(envOverFile.db.name, "env-db");
  assert.equal(envOverFile.db.user, "file-user");

  const flagOverAll = parse(["--db.host", "from-flag"], env, files);
  assert.equal(flagOverAll.db.host, "from-flag");
  assert.equal(flagOverAll.db.name, "env-db");
  assert.equal(flagOverAll.db.user, "file-user");
  assert.equal(flagOverAll.db.uri, "postgres://file-user@from-flag:5432/env-db?sslmode=prefer");
});

Deno.test("parseConfig() treats an empty environment variable as unset", () => {
  const c = parse([], { PROMSCALE_DB_HOST: "" }, { "config.yml": "db.host: file" });
  assert.equal(c.db.host, "file");
});

Deno.test("parseConfig() reads PROMSCALE_X=false as false, and a flag still wins", () => {
  const env = { PROMSCALE_METRICS_HIGH_AVAILABILITY: "false" };
  assert.equal(parse([], env).metrics.ha.enabled, false);
  assert.equal(parse(["--metrics.high-availability"], env).metrics.ha.enabled, true);
  assert.equal(parse(["--metrics.high-availability=true"], env).metrics.ha.enabled, true);

  const envTrue = { PROMSCALE_METRICS_HIGH_AVAILABILITY: "true" };
  assert.equal(parse([], envTrue).metrics.ha.enabled, true);
  assert.equal(parse(["--metrics.high-availability=false"], envTrue).metrics.ha.enabled, false);

  // An env false also beats a file true.
  const file = { "config.yml": "metrics.high-availability: true" };
  assert.equal(parse([], {}, file).metrics.ha.enabled, true);
  assert.equal(parse([], env, file).metrics.ha.enabled, false);
});

Deno.test("parseConfig() accepts true/false/1/0/yes/no in any case for booleans", () => {
  for (
    const [text, want] of [
      ["true", true],
      ["TRUE", true],
      ["1", true],
      ["yes", true],
      ["Yes", true],
      ["false", false],
      ["False", false],
      ["0", false],
      ["no", false],
      ["NO", false],
    ] as const
  ) {
    assert.equal(
      parse([], { PROMSCALE_METRICS_ASYNC_ACKS: text }).metrics.asyncAcks,
      want,
      `env ${text}`,
    );
    assert.equal(parse([`--metrics.async-acks=${text}`]).metrics.asyncAcks, want, `flag ${text}`);
  }
  rejects(
    [],
    'Invalid value "maybe" for --metrics.async-acks (from PROMSCALE_METRICS_ASYNC_ACKS): ' +
      "not a boolean (use true or false)",
    { PROMSCALE_METRICS_ASYNC_ACKS: "maybe" },
  );
  rejects(["--startup.only=sure"], /^Invalid value "sure" for --startup\.only: not a boolean/);
});

Deno.test("parseConfig() does not let a boolean flag swallow the next argument", () => {
  rejects(
    ["--metrics.high-availability", "false"],
    'Unexpected argument "false"; boolean flags take their value as --flag=false',
  );
  const c = parse(["--metrics.async-acks", "--startup.skip-migrate=true"]);
  assert.equal(c.metrics.asyncAcks, true);
  assert.equal(c.startup.skipMigrate, true);
});

Deno.test("parseConfig() keeps a flag-like value as the value of the flag before it", () => {
  const c = parse(["--db.password", "--not-a-flag", "--db.user", "-x"]);
  assert.equal(c.db.password, "--not-a-flag");
  assert.equal(c.db.user, "-x");
});

Deno.test("parseConfig() accepts Go-style single-dash flags", () => {
  const c = parse(["-db.host=h", "-db.port", "1234", "-metrics.high-availability"]);
  assert.equal(c.db.host, "h");
  assert.equal(c.db.port, 1234);
  assert.equal(c.metrics.ha.enabled, true);
});

Deno.test("parseConfig() lets the last of a repeated flag win", () => {
  assert.equal(parse(["--db.host=a", "--db.host=b"]).db.host, "b");
});

Deno.test("parseConfig() maps old dash-style flags to the dotted ones with a warning", () => {
  const c = parse([
    "--high-availability",
    "--db-connections-max=7",
    "--db-uri",
    "postgres://u@h/d",
    "--web-listen-address=:9999",
    "--log-level=warn",
    "--log-format",
    "json",
  ]);
  assert.equal(c.metrics.ha.enabled, true);
  assert.equal(c.db.connectionsMax, 7);
  assert.equal(c.db.uri, "postgres://u@h/d");
  assert.equal(c.web.port, 9999);
  assert.deepEqual(c.telemetry, { logLevel: "warn", logFormat: "json" });
  assert.deepEqual(c.warnings, [
    'Flag "--high-availability" is deprecated; use "--metrics.high-availability"',
    'Flag "--db-connections-max" is deprecated; use "--db.connections-max"',
    'Flag "--db-uri" is deprecated; use "--db.uri"',
    'Flag "--web-listen-address" is deprecated; use "--web.listen-address"',
    'Flag "--log-level" is deprecated; use "--telemetry.log.level"',
    'Flag "--log-format" is deprecated; use "--telemetry.log.format"',
  ]);
});

Deno.test("parseConfig() accepts old names in the environment and the file with a warning", () => {
  const c = parse(
    [],
    { PROMSCALE_HIGH_AVAILABILITY: "true", PROMSCALE_LOG_LEVEL: "debug" },
    { "config.yml": "db-host: old-host\n" },
  );
  assert.equal(c.metrics.ha.enabled, true);
  assert.equal(c.telemetry.logLevel, "debug");
  assert.equal(c.db.host, "old-host");
  assert.deepEqual(c.warnings.toSorted(), [
    'Config file key "db-host" is deprecated; use "db.host"',
    'Environment variable "PROMSCALE_HIGH_AVAILABILITY" is deprecated; ' +
    'use "PROMSCALE_METRICS_HIGH_AVAILABILITY"',
    'Environment variable "PROMSCALE_LOG_LEVEL" is deprecated; use "PROMSCALE_TELEMETRY_LOG_LEVEL"',
  ]);
  // The dotted name's variable wins over the old one.
  const both = parse([], {
    PROMSCALE_LOG_LEVEL: "debug",
    PROMSCALE_TELEMETRY_LOG_LEVEL: "error",
  });
  assert.equal(both.telemetry.logLevel, "error");
});

Deno.test("parseDuration() reads Go-style durations in milliseconds", () => {
  for (
    const [text, ms] of [
      ["0", 0],
      ["500ms", 500],
      ["30s", 30_000],
      ["1.5s", 1500],
      ["1m", 60_000],
      ["1h30m", 5_400_000],
      ["2h", 7_200_000],
      ["1d", 86_400_000],
      ["1m30s500ms", 90_500],
      ["250us", 0.25],
      ["1000000ns", 1],
      [".5s", 500],
    ] as const
  ) {
    assert.equal(parseDuration(text), ms, text);
  }
  for (const bad of ["", "abc", "30", "1.5", "-1s", "1x", "s", "1h 30m", "1h-30m"]) {
    assert.throws(() => parseDuration(bad), ConfigError, bad);
  }
  assert.throws(() => parseDuration("abc"), { message: 'Invalid duration "abc": not a duration' });
});

Deno.test("parseBytes() reads plain integers and units", () => {
  for (
    const [text, bytes] of [
      ["33554432", 33554432],
      ["16MiB", 16 * 2 ** 20],
      ["16mib", 16 * 2 ** 20],
      ["16MB", 16_000_000],
      ["1GiB", 2 ** 30],
      ["512KiB", 512 * 1024],
      ["100B", 100],
      ["1.5KiB", 1536],
    ] as const
  ) {
    assert.equal(parseBytes(text), bytes, text);
  }
  for (const bad of ["", "MiB", "16 XB", "-1", "1e3"]) {
    assert.throws(() => parseBytes(bad), ConfigError, bad);
  }
});

Deno.test("parseConfig() names the flag and the value of a bad duration", () => {
  rejects(
    ["--metrics.high-availability.lease-timeout", "abc"],
    'Invalid value "abc" for --metrics.high-availability.lease-timeout: not a duration',
  );
  rejects(
    ["--web.read-timeout=30"],
    'Invalid value "30" for --web.read-timeout: not a duration: missing unit (e.g. "30s")',
  );
  rejects(
    ["--metrics.high-availability.lease-timeout=0"],
    'Invalid value "0" for --metrics.high-availability.lease-timeout: must be greater than 0',
  );
  rejects(
    [],
    'Invalid value "soon" for --db.connection-timeout (from config file "config.yml"): ' +
      "not a duration",
    {},
    { "config.yml": "db.connection-timeout: soon" },
  );
});

Deno.test("parseConfig() rejects bad values with one clear line", () => {
  const cases: [string[], string | RegExp][] = [
    [["--db.port=abc"], 'Invalid value "abc" for --db.port: not an integer'],
    [["--db.port=70000"], 'Invalid value "70000" for --db.port: must be 1 to 65535'],
    [
      ["--db.connections-max=-1"],
      'Invalid value "-1" for --db.connections-max: must be at least 0',
    ],
    [["--web.max-in-flight-requests=0"], /^Invalid value "0" for --web\.max-in-flight-requests/],
    [["--web.max-request-size=lots"], /^Invalid value "lots" for --web\.max-request-size: /],
    [["--web.max-request-size=0"], /must be greater than 0$/],
    [
      ["--db.ssl-mode=sometimes"],
      'Invalid value "sometimes" for --db.ssl-mode: must be one of disable, allow, prefer, ' +
      "require, verify-ca, verify-full",
    ],
    [["--telemetry.log.level=trace"], /^Invalid value "trace" for --telemetry\.log\.level/],
    [["--telemetry.log.format=xml"], /^Invalid value "xml" for --telemetry\.log\.format/],
    [["--web.telemetry-path=metrics"], /--web\.telemetry-path: must start with "\/"$/],
    [
      ["--metrics.high-availability.cluster-label=bad-label"],
      /cluster-label: not a valid label name$/,
    ],
    [
      ["--metrics.high-availability.replica-label=cluster"],
      /cluster-label and .*replica-label must differ/,
    ],
    [["--startup.only", "--startup.skip-migrate"], /cannot be combined$/],
    [["--nope"], 'Unknown flag "--nope"'],
    [["--db.urii=x"], 'Unknown flag "--db.urii" (did you mean --db.uri?)'],
    [["--db.host"], 'Flag "--db.host" needs a value'],
    [["serve"], 'Unexpected argument "serve"'],
    [["--", "--db.host"], 'Unexpected argument "--db.host"'],
  ];
  for (const [argv, message] of cases) rejects(argv, message);
});

Deno.test("parseConfig() requires lease-refresh shorter than the failover and lease timeouts", () => {
  rejects(
    ["--metrics.high-availability.lease-refresh=30s"],
    /^--metrics\.high-availability\.lease-refresh \(30s\) must be shorter than/,
  );
  rejects(
    [
      "--metrics.high-availability.lease-timeout=20s",
      "--metrics.high-availability.lease-refresh=20s",
    ],
    /lease-refresh \(20s\) must be shorter/,
  );
  const ok = parse(["--metrics.high-availability.lease-refresh=29s"]);
  assert.equal(ok.metrics.ha.leaseRefreshMs, 29_000);
});

Deno.test("parseConfig() rejects legacy election combined with lease-based HA", () => {
  const legacy = [
    "--leader-election-pg-advisory-lock-id=42",
    "--leader-election-pg-advisory-lock-prometheus-timeout=15s",
  ];
  rejects(
    [...legacy, "--metrics.high-availability"],
    "Leader election (--leader-election-pg-advisory-lock-id) cannot be combined with " +
      "--metrics.high-availability",
  );
  rejects(
    ["--leader-election-pg-advisory-lock-id=42", "--metrics.high-availability"],
    /must be given together|cannot be combined/,
  );
  rejects([...legacy], /cannot be combined/, { PROMSCALE_METRICS_HIGH_AVAILABILITY: "yes" });
});

Deno.test("parseConfig() needs both legacy election flags and warns that they are deprecated", () => {
  rejects(
    ["--leader-election-pg-advisory-lock-id=42"],
    "--leader-election-pg-advisory-lock-id and " +
      "--leader-election-pg-advisory-lock-prometheus-timeout must be given together",
  );
  rejects(["--leader-election-pg-advisory-lock-prometheus-timeout=15s"], /must be given together/);
  rejects(
    ["--leader-election-pg-advisory-lock-id=x"],
    /^Invalid value "x" for --leader-election-pg-advisory-lock-id: not an integer$/,
  );
  const c = parse([
    "--leader-election-pg-advisory-lock-id=-7",
    "--leader-election-pg-advisory-lock-prometheus-timeout=15s",
  ]);
  assert.deepEqual(c.legacyElection, { advisoryLockId: -7, prometheusTimeoutMs: 15_000 });
  assert.equal(c.metrics.ha.enabled, false);
  assert.equal(c.warnings.length, 1);
  assert.match(c.warnings[0], /deprecated/);
});

Deno.test("parseConfig() rejects only one of the TLS files", () => {
  const message = "--auth.tls-cert-file and --auth.tls-key-file must be given together";
  rejects(["--auth.tls-cert-file=cert.pem"], message);
  rejects(["--auth.tls-key-file=key.pem"], message);
  const c = parse(["--auth.tls-cert-file=cert.pem", "--auth.tls-key-file=key.pem"]);
  assert.equal(c.web.tlsCertFile, "cert.pem");
  assert.equal(c.web.tlsKeyFile, "key.pem");
});

Deno.test("parseConfig() resolves auth secrets from flags and files", () => {
  const files = { "/run/pw": "s3cret\n", "/run/token": "tok\r\n", "/run/empty": "\n" };
  const basic = parse(
    ["--web.auth.username=admin", "--web.auth.password-file=/run/pw"],
    {},
    files,
  );
  assert.equal(basic.web.authUsername, "admin");
  assert.equal(basic.web.authPassword, "s3cret");
  const bearer = parse(["--web.auth.bearer-token-file=/run/token"], {}, files);
  assert.equal(bearer.web.authBearerToken, "tok");
  assert.equal(
    parse([], { PROMSCALE_WEB_AUTH_BEARER_TOKEN: "t2" }).web.authBearerToken,
    "t2",
  );

  rejects(
    ["--web.auth.username=a", "--web.auth.password-file=/run/missing"],
    'Invalid value "/run/missing" for --web.auth.password-file: file does not exist',
    {},
    files,
  );
  rejects(["--web.auth.bearer-token-file=/run/empty"], /file is empty$/, {}, files);
  rejects(["--web.auth.username=a"], /--web\.auth\.username needs --web\.auth\.password/);
  rejects(["--web.auth.password=p"], "--web.auth.password needs --web.auth.username");
  rejects(
    ["--web.auth.username=a", "--web.auth.password=p", "--web.auth.bearer-token=t"],
    /cannot be combined$/,
  );
  rejects(
    ["--web.auth.username=a", "--web.auth.password=p", "--web.auth.password-file=/run/pw"],
    "--web.auth.password and --web.auth.password-file cannot be combined",
    {},
    files,
  );
});

Deno.test("parseConfig() parses listen addresses", () => {
  for (
    const [address, hostname, port] of [
      [":9201", "0.0.0.0", 9201],
      ["127.0.0.1:9201", "127.0.0.1", 9201],
      ["[::1]:9201", "::1", 9201],
      ["localhost:0", "localhost", 0],
    ] as const
  ) {
    const c = parse([`--web.listen-address=${address}`]);
    assert.deepEqual([c.web.listenAddress, c.web.hostname, c.web.port], [address, hostname, port]);
  }
  for (const bad of ["9201", ":abc", ":70000", "::1:9201", "host:", "[]:1"]) {
    rejects([`--web.listen-address=${bad}`], /^Invalid value ".*" for --web\.listen-address: /);
  }
});

Deno.test("parseConfig() lets --db.uri override the parts and checks its scheme", () => {
  const c = parse(["--db.uri", "postgresql://u:p@db:5433/x", "--db.host=ignored"]);
  assert.equal(c.db.uri, "postgresql://u:p@db:5433/x");
  assert.deepEqual(c.warnings, ["--db.host ignored because --db.uri is set"]);
  assert.equal(parse([], { PROMSCALE_DB_URI: "postgres://e/db" }).db.uri, "postgres://e/db");
  rejects(
    ["--db.uri=mysql://root:hunter2@db/x"],
    'Invalid value "mysql://root:****@db/x" for --db.uri: must start with "postgres://" or ' +
      '"postgresql://"',
  );
});

Deno.test("parseConfig() builds URIs for IPv6 hosts and socket directories", () => {
  assert.equal(
    parse(["--db.host=::1"]).db.uri,
    "postgres://postgres@[::1]:5432/postgres?sslmode=prefer",
  );
  assert.equal(
    parse(["--db.host=/var/run/postgresql", "--db.ssl-mode=disable"]).db.uri,
    "postgres://postgres@%2Fvar%2Frun%2Fpostgresql:5432/postgres?sslmode=disable",
  );
});

Deno.test("redactUri() masks passwords", () => {
  for (
    const [uri, want] of [
      ["postgres://user:secret@host/db", "postgres://user:****@host/db"],
      [
        "postgresql://user:s%40c@host:5432/db?sslmode=require",
        "postgresql://user:****@host:5432/db?sslmode=require",
      ],
      ["postgres://user:p@ss@host/db", "postgres://user:****@host/db"],
      ["postgres://user@host/db", "postgres://user@host/db"],
      ["postgres://host:5432/db", "postgres://host:5432/db"],
      [
        "postgres://host/db?user=u&password=pw&sslmode=x",
        "postgres://host/db?user=u&password=****&sslmode=x",
      ],
      ["postgres://host/db?PASSWORD=pw", "postgres://host/db?PASSWORD=****"],
      ["host=h password=pw user=u", "host=h password=**** user=u"],
      ["host=h password='p w' user=u", "host=h password=**** user=u"],
    ] as const
  ) {
    assert.equal(redactUri(uri), want, uri);
  }
});

Deno.test("parseConfig() reads typed values from the config file", () => {
  const yaml = [
    "db.port: 6000",
    "metrics.high-availability: true",
    "metrics.async-acks: no",
    "metrics.high-availability.lease-timeout: 2m",
    "web.max-request-size: 1MiB",
    "db.password:",
    "db.user: 0123",
    "db.name: ~",
    'db.host: "null"',
    "",
  ].join("\n");
  const c = parse([], {}, { "config.yml": yaml });
  assert.equal(c.db.port, 6000);
  assert.equal(c.metrics.ha.enabled, true);
  assert.equal(c.metrics.asyncAcks, false);
  assert.equal(c.metrics.ha.leaseTimeoutMs, 120_000);
  assert.equal(c.web.maxRequestBytes, 2 ** 20);
  assert.equal(c.db.password, "");
  assert.equal(c.db.user, "0123"); // the source text, not the number 123
  assert.equal(c.db.name, "postgres"); // a YAML null is unset
  assert.equal(c.db.host, "null");
  assert.equal(parse([], {}, { "config.yml": "" }).configFile, "config.yml");
  assert.equal(parse([], {}, { "config.yml": "# only a comment\n" }).db.port, 5432);
});

Deno.test("parseConfig() rejects a config file with an unknown key or a bad shape", () => {
  rejects([], 'Unknown key "db.hots" in config file "config.yml"', {}, {
    "config.yml": "db.hots: x",
  });
  rejects([], 'Unknown key "version" in config file "config.yml"', {}, {
    "config.yml": "version: true",
  });
  rejects([], 'Config file "config.yml" must be a map of flag name to value', {}, {
    "config.yml": "- a\n- b\n",
  });
  rejects(
    [],
    'Invalid value for "db.host" in config file "config.yml": expected a string, number or boolean',
    {},
    { "config.yml": "db.host: [a, b]" },
  );
  rejects([], /^Cannot parse config file "config\.yml": /, {}, { "config.yml": "a: [\n" });
});

Deno.test("parseConfig() rejects a missing config file only when it was asked for", () => {
  assert.equal(parse([]).configFile, "");
  rejects(["--config", "/etc/promscale.yml"], 'Config file "/etc/promscale.yml" does not exist');
  rejects([], 'Config file "/etc/p.yml" does not exist', { PROMSCALE_CONFIG: "/etc/p.yml" });
  const c = parse(["--config=/etc/p.yml"], {}, { "/etc/p.yml": "db.name: x" });
  assert.equal(c.configFile, "/etc/p.yml");
  assert.equal(c.db.name, "x");
});

Deno.test("parseConfig() reports a config file that cannot be read", () => {
  assert.throws(
    () =>
      parseConfig(["--config=/x"], {}, () => {
        throw new Error("Permission denied");
      }),
    { name: "ConfigError", message: 'Cannot read config file "/x": Permission denied' },
  );
});

Deno.test("parseConfig() --help lists every flag with its env name and no env values", () => {
  const flags = [
    "config",
    "web.listen-address",
    "web.telemetry-path",
    "web.auth.username",
    "web.auth.password",
    "web.auth.password-file",
    "web.auth.bearer-token",
    "web.auth.bearer-token-file",
    "auth.tls-cert-file",
    "auth.tls-key-file",
    "web.max-request-size",
    "web.max-decoded-size",
    "web.max-in-flight-requests",
    "web.read-timeout",
    "db.uri",
    "db.host",
    "db.port",
    "db.user",
    "db.password",
    "db.name",
    "db.ssl-mode",
    "db.app",
    "db.connections-max",
    "db.connection-timeout",
    "db.statement-timeout",
    "metrics.async-acks",
    "metrics.cache.series.max-size",
    "metrics.high-availability",
    "metrics.high-availability.cluster-label",
    "metrics.high-availability.replica-label",
    "metrics.high-availability.lease-timeout",
    "metrics.high-availability.lease-refresh",
    "metrics.high-availability.failover-timeout",
    "leader-election-pg-advisory-lock-id",
    "leader-election-pg-advisory-lock-prometheus-timeout",
    "telemetry.log.level",
    "telemetry.log.format",
    "startup.only",
    "startup.skip-migrate",
    "storage.compress-after",
  ];
  const env = { PROMSCALE_DB_PASSWORD: "hunter2", PROMSCALE_WEB_AUTH_PASSWORD: "hunter3" };
  for (const argv of [["--help"], ["-h"], ["--db.host=x", "--help"]]) {
    const e = exit(argv, env);
    assert.equal(e.code, 0);
    for (const f of flags) {
      assert.match(e.output, new RegExp(`^  --${f.replaceAll(".", "\\.")}[ [\\n]`, "m"), f);
      const envName = "PROMSCALE_" + f.toUpperCase().replace(/[.-]/g, "_");
      assert.ok(e.output.includes(`env: ${envName})`), envName);
    }
    assert.ok(e.output.includes("--version"));
    assert.ok(e.output.includes("--db-connections-max"));
    assert.ok(e.output.includes('default: ":9201"'));
    assert.ok(!e.output.includes("hunter"));
  }
});

Deno.test("parseConfig() answers --version and `promscale version` with the version line", () => {
  const line = versionLine();
  assert.equal(line, `promscale ${VERSION} (deno ${Deno.version.deno}, commit ${COMMIT})`);
  assert.match(versionLine("2.0.0"), /^promscale \d+\.\d+\.\d+ \(deno 2\.0\.0, commit \S+\)$/);
  for (const argv of [["--version"], ["version"], ["--db.host=x", "version"]]) {
    const e = exit(argv);
    assert.equal(e.code, 0);
    assert.equal(e.output, line);
  }
  // --version wins over a configuration that would not parse.
  assert.equal(exit(["--version"], { PROMSCALE_DB_PORT: "x" }).output, line);
  rejects(["version", "now"], 'Unexpected argument "now" after "version"');
});

Deno.test("version.ts takes the version from deno.json", async () => {
  const denoJson = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  assert.equal(VERSION, denoJson.version);
});

Deno.test("loadConfig() reads the real file system", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/promscale.yml`;
    Deno.writeTextFileSync(path, "web.telemetry-path: /from-file\n");
    const c = loadConfig([`--config=${path}`, "--db.host=h"]);
    assert.equal(c.configFile, path);
    assert.equal(c.db.host, "h");
    assert.throws(() => loadConfig([`--config=${dir}/missing.yml`]), ConfigError);
    assert.throws(() => loadConfig([`--config=${dir}`]), /^ConfigError: Cannot read config file/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("parseConfig() shows help for Go's -help and for a help subcommand", () => {
  for (const argv of [["-help"], ["help"], ["--help"]]) {
    const e = exit(argv);
    assert.equal(e.code, 0);
    assert.ok(e.output.includes("--metrics.high-availability"), argv.join(" "));
  }
});
