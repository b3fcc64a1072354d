/**
 * Runs the schema migrations at start: versioned, idempotent, and safe when
 * several connectors start at once (a session advisory lock serialises them;
 * the ones that wait find the work done).
 */
import type { Sql } from "../../deps.ts";
import { MIGRATION_LOCK_KEY, type MigrationEnv, MIGRATIONS } from "./migrations/schema.ts";

/** What a migration run did. */
export interface MigrateResult {
  from: number;
  to: number;
  applied: number[];
  timescaledb: boolean;
}

/** Brings the database to the newest schema version; returns what it did. */
export async function migrate(
  sql: Sql,
  onApplied: (version: number, description: string) => void = () => {},
): Promise<MigrateResult> {
  const conn = await sql.reserve();
  try {
    await conn`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      await conn`SET client_min_messages TO warning`;
      await conn`CREATE SCHEMA IF NOT EXISTS _prom_catalog`;
      await conn`CREATE TABLE IF NOT EXISTS _prom_catalog.migrations (
        version     int PRIMARY KEY,
        description text NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
      )`;
      const [{ current }] = await conn<{ current: number }[]>`
        SELECT coalesce(max(version), 0)::int AS current FROM _prom_catalog.migrations`;
      const [{ present }] = await conn<{ present: boolean }[]>`
        SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS present`;
      const env: MigrationEnv = { timescaledb: present };
      const applied: number[] = [];
      for (const m of MIGRATIONS) {
        if (m.version <= current) continue;
        const text = typeof m.sql === "string" ? m.sql : m.sql(env);
        await conn`BEGIN`;
        try {
          await conn.unsafe(text);
          await conn`INSERT INTO _prom_catalog.migrations (version, description)
                     VALUES (${m.version}, ${m.description})`;
          await conn`COMMIT`;
        } catch (err) {
          await conn`ROLLBACK`.catch(() => {});
          throw err;
        }
        applied.push(m.version);
        onApplied(m.version, m.description);
      }
      const to = applied.length ? applied[applied.length - 1] : current;
      return { from: current, to, applied, timescaledb: present };
    } finally {
      await conn`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`.catch(() => {});
    }
  } finally {
    conn.release();
  }
}

/** The schema version the database is at (0 when never migrated). */
export async function schemaVersion(sql: Sql): Promise<number> {
  const [{ present }] = await sql<{ present: boolean }[]>`
    SELECT to_regclass('_prom_catalog.migrations') IS NOT NULL AS present`;
  if (!present) return 0;
  const [{ version }] = await sql<{ version: number }[]>`
    SELECT coalesce(max(version), 0)::int AS version FROM _prom_catalog.migrations`;
  return version;
}
