/**
 * Throwaway PostgreSQL databases for integration and end-to-end tests: one
 * per test, uniquely named, dropped WITH (FORCE) at the end so tests can run
 * in parallel and a crashed connector cannot keep one alive.
 */
import { postgres, type Sql } from "../../deps.ts";

/**
 * URI of a database the tests may create and drop databases from (a
 * superuser, or a role with CREATEDB). Override with `TEST_PG_URI`.
 */
export const PG_ADMIN_URI: string = Deno.env.get("TEST_PG_URI") ??
  "postgres://postgres@127.0.0.1:5432/postgres";

/** A database created for one test. */
export interface FreshDatabase {
  /** Database name, a safe lowercase identifier. */
  name: string;
  /** URI of the database (the admin URI with the database name replaced). */
  uri: string;
  /** A postgres.js pool (max 4) on the database. */
  sql: Sql;
  /** Ends the pool and drops the database, whoever is still connected. Idempotent. */
  drop(): Promise<void>;
}

/** Opens a short-lived connection as the admin, runs `fn`, closes it. */
async function withAdmin<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
  const admin = postgres(PG_ADMIN_URI, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    return await fn(admin);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** Returns `uri` pointing at database `name`. */
export function databaseUri(uri: string, name: string): string {
  const u = new URL(uri);
  u.pathname = `/${name}`;
  return u.toString();
}

function databaseName(prefix: string): string {
  let p = prefix.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
  if (!/^[a-z]/.test(p)) p = `t_${p}`;
  const suffix = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  // PostgreSQL truncates identifiers at 63 bytes; keep the suffix intact.
  return `${p.slice(0, 63 - suffix.length - 1)}_${suffix}`;
}

/**
 * Creates a database named `prefix` + a random suffix and returns a pool on
 * it. Call `drop()` in a `finally`.
 */
export async function freshDatabase(prefix: string): Promise<FreshDatabase> {
  const name = databaseName(prefix);
  await withAdmin(async (admin) => {
    // CREATE DATABASE copies template1 and fails (55006) while another
    // session is connected to it; that is brief, so retry a few times.
    for (let attempt = 1;; attempt++) {
      try {
        await admin.unsafe(`CREATE DATABASE "${name}"`);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== "55006" || attempt >= 10) {
          throw new Error(
            `Cannot create test database "${name}" via ${redact(PG_ADMIN_URI)}: ${
              (err as Error).message
            }`,
          );
        }
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  });
  const uri = databaseUri(PG_ADMIN_URI, name);
  const sql = postgres(uri, { max: 4, onnotice: () => {} });
  let dropped: Promise<void> | null = null;
  const drop = () =>
    dropped ??= (async () => {
      await sql.end({ timeout: 5 }).catch(() => {});
      await withAdmin((admin) => admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
    })();
  return { name, uri, sql, drop };
}

function redact(uri: string): string {
  const u = new URL(uri);
  if (u.password) u.password = "xxx";
  return u.toString();
}
