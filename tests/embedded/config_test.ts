/**
 * When the embedded database is chosen: only when no database is configured
 * by flag, PROMSCALE_DB_* variable or config file; libpq's PG* variables do
 * not count. Its flags are checked, and what cannot work is refused.
 */
import { assertEquals, assertStringIncludes, assertThrows } from "../helpers/assert.ts";
import { ConfigError, embeddedRefusal, parseConfig } from "../../src/config.ts";

function parse(argv: string[], env: Record<string, string> = {}, file?: string) {
  return parseConfig(argv, env, (path) => path === "config.yml" ? file ?? null : null);
}

Deno.test("parseConfig() chooses the embedded database only when no database is configured", () => {
  assertEquals(parse([]).db.embedded, { dir: "./promscale-data", sqlListen: null });
  assertEquals(
    parse([], { PGHOST: "db.example", PGPORT: "6543", PGUSER: "u", PGDATABASE: "d" }).db.embedded,
    { dir: "./promscale-data", sqlListen: null },
  );
  // Pool knobs choose no database.
  assertEquals(parse(["--db.connections-max", "3"]).db.embedded?.dir, "./promscale-data");
  const configured: [string, string[], Record<string, string>, string?][] = [
    ["--db.uri", ["--db.uri", "postgres://u@h/d"], {}],
    ["--db.host", ["--db.host", "h"], {}],
    ["--db.port", ["--db.port", "5433"], {}],
    ["--db.name", ["--db.name", "x"], {}],
    ["--db.ssl-mode", ["--db.ssl-mode", "require"], {}],
    ["PROMSCALE_DB_URI", [], { PROMSCALE_DB_URI: "postgres://u@h/d" }],
    ["PROMSCALE_DB_USER", [], { PROMSCALE_DB_USER: "u" }],
    ["config file db.host", [], {}, "db.host: h\n"],
    ["config file db.uri", [], {}, "db:\n  uri: postgres://u@h/d\n"],
  ];
  for (const [name, argv, env, file] of configured) {
    assertEquals(parse(argv, env, file).db.embedded, null, name);
  }
});

Deno.test("parseConfig() reads the embedded database's flags and refuses what cannot work", () => {
  assertEquals(
    parse(["--db.embedded-dir", "/srv/p", "--db.embedded-sql-listen", "127.0.0.1:5433"]).db
      .embedded,
    { dir: "/srv/p", sqlListen: { hostname: "127.0.0.1", port: 5433 } },
  );
  assertEquals(
    parse([], { PROMSCALE_DB_EMBEDDED_SQL_LISTEN: "[::1]:0" }).db.embedded?.sqlListen,
    { hostname: "::1", port: 0 },
  );
  const refused: [string[], string][] = [
    [["--db.embedded-sql-listen", "0.0.0.0:5433"], "loopback"],
    [["--db.embedded-sql-listen", ":5433"], "loopback"],
    [["--db.embedded-sql-listen", "10.0.0.1:5433"], "loopback"],
    [["--db.embedded-dir", "x", "--db.uri", "postgres://u@h/d"], "cannot be combined"],
    [["--db.embedded-dir", ""], "empty path"],
  ];
  for (const [argv, text] of refused) {
    const err = assertThrows(() => parse(argv), ConfigError);
    assertStringIncludes(err.message, text, argv.join(" "));
    assertEquals(err.message.includes("\n"), false);
  }
});

Deno.test("embeddedRefusal() refuses the legacy advisory-lock election on the embedded database", () => {
  const argv = [
    "--leader-election-pg-advisory-lock-id=7",
    "--leader-election-pg-advisory-lock-prometheus-timeout=1m",
  ];
  const refusal = embeddedRefusal(parse(argv));
  assertStringIncludes(refusal ?? "", "needs a shared PostgreSQL (--db.uri)");
  assertEquals(embeddedRefusal(parse([...argv, "--db.uri", "postgres://u@h/d"])), null);
  assertEquals(embeddedRefusal(parse([])), null);
});
