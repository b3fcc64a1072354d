/**
 * Schema migrations on the real PostgreSQL: several connectors starting on
 * one empty database at once, re-runs, a refused skip, and a migration that
 * fails half-way. A fresh database per test, dropped at the end.
 */
import { postgres, type Sql } from "../../deps.ts";
import { startConnector } from "../../src/app.ts";
import { parseConfig } from "../../src/config.ts";
import { migrate, schemaVersion } from "../../src/storage/migrate.ts";
import {
  MIGRATION_LOCK_KEY,
  MIGRATIONS,
  SCHEMA_VERSION,
} from "../../src/storage/migrations/schema.ts";
import { Logger, silentLogger } from "../../src/telemetry/log.ts";
import { assert, assertEquals, assertRejects } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";

function config(uri: string, ...args: string[]) {
  return parseConfig(
    ["--db.uri", uri, "--web.listen-address", "127.0.0.1:0", "--db.connections-max", "2", ...args],
    {},
    () => null,
  );
}

function pool(uri: string): Sql {
  return postgres(uri, { max: 2, onnotice: () => {} });
}

Deno.test("connectors migrating one empty database at once all succeed", async () => {
  const db = await freshDatabase("migrate_race");
  try {
    // Three connectors, each with its own pool, start together; each logs
    // the migrations it applied.
    const logs: string[][] = [[], [], []];
    const started = await Promise.all(logs.map((lines) =>
      startConnector(
        config(db.uri, "--startup.only"),
        new Logger("info", "json", (line) => lines.push(line)),
      )
    ));
    for (const c of started) assertEquals(c.server, null);
    const applied = logs.flat().map((l) => JSON.parse(l))
      .filter((e) => e.msg === "Applied schema migration")
      .map((e) => e.version as number)
      .sort((a, b) => a - b);
    // Every migration ran exactly once, whoever ran it.
    assertEquals(applied, MIGRATIONS.map((m) => m.version));

    assert(SCHEMA_VERSION >= 2);
    assertEquals(await schemaVersion(db.sql), SCHEMA_VERSION);
    const rows = await db.sql<{ version: number }[]>`
      SELECT version FROM _prom_catalog.migrations ORDER BY version`;
    assertEquals(rows.map((r) => r.version), MIGRATIONS.map((m) => m.version));
    const [{ tables }] = await db.sql<{ tables: number }[]>`
      SELECT count(*)::int AS tables FROM pg_class
      WHERE oid IN ('_prom_catalog.series'::regclass, '_prom_data.samples'::regclass,
                    '_prom_catalog.metric'::regclass, '_prom_catalog.ha_leases'::regclass)`;
    assertEquals(tables, 4);

    // And once more, from yet another pool: nothing to do.
    const again = pool(db.uri);
    try {
      const res = await migrate(again);
      assertEquals(res.applied, []);
      assertEquals([res.from, res.to], [SCHEMA_VERSION, SCHEMA_VERSION]);
    } finally {
      await again.end({ timeout: 5 });
    }
  } finally {
    await db.drop();
  }
});

Deno.test("--startup.skip-migrate refuses an unmigrated database", async () => {
  const db = await freshDatabase("migrate_skip");
  try {
    await assertRejects(
      () => startConnector(config(db.uri, "--startup.skip-migrate"), silentLogger),
      Error,
      `Database schema is at version 0, this build needs ${SCHEMA_VERSION}`,
    );
    assertEquals(await schemaVersion(db.sql), 0);
    // After a migration it starts.
    await startConnector(config(db.uri, "--startup.only"), silentLogger);
    const c = await startConnector(config(db.uri, "--startup.skip-migrate"), silentLogger);
    try {
      assertEquals((await fetch(`${c.url}/healthz`)).status, 200);
    } finally {
      await c.stop();
    }
  } finally {
    await db.drop();
  }
});

Deno.test("a migration that fails leaves nothing half-applied and the lock free", async () => {
  const db = await freshDatabase("migrate_fail");
  const a = pool(db.uri);
  const b = pool(db.uri);
  const broken = {
    version: SCHEMA_VERSION + 1000,
    description: "broken on purpose",
    sql: "CREATE TABLE _prom_catalog.half_done (x int); SELECT 1 / 0;",
  };
  try {
    await migrate(a);
    MIGRATIONS.push(broken);
    try {
      await assertRejects(() => migrate(a), Error, "division by zero");
    } finally {
      MIGRATIONS.splice(MIGRATIONS.indexOf(broken), 1);
    }
    assertEquals(await schemaVersion(db.sql), SCHEMA_VERSION);
    const [{ half }] = await db.sql<{ half: string | null }[]>`
      SELECT to_regclass('_prom_catalog.half_done')::text AS half`;
    assertEquals(half, null);
    const locks = await db.sql`
      SELECT 1 FROM pg_locks
      WHERE locktype = 'advisory' AND objid = ${MIGRATION_LOCK_KEY}::oid
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
    assertEquals(locks.length, 0);
    // Another connector is not blocked by the failed one.
    const res = await migrate(b);
    assertEquals(res.applied, []);
  } finally {
    await a.end({ timeout: 5 });
    await b.end({ timeout: 5 });
    await db.drop();
  }
});

Deno.test("migrations are listed in ascending version order (a database past a version skips it)", () => {
  const versions = MIGRATIONS.map((m) => m.version);
  for (let i = 1; i < versions.length; i++) {
    assert(versions[i] > versions[i - 1], `version ${versions[i]} after ${versions[i - 1]}`);
  }
  assertEquals(SCHEMA_VERSION, versions[versions.length - 1]);
});
