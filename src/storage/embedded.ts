/**
 * The embedded database: PGlite (PostgreSQL compiled to WebAssembly) in
 * this process, used when no database is configured at all. Its data lives
 * in one directory (created with mode 0700), guarded by a lock file so that
 * a second connector on the same directory is refused instead of
 * corrupting it. The connector's pool reaches it through a Unix socket in
 * that directory (embedded_wire.ts); users may get SQL on a loopback
 * port (`--db.embedded-sql-listen`).
 */
import { loadPglite } from "../../deps.ts";
import { BackendTurns, serveWire, type WireServer } from "./embedded_wire.ts";
import type { EmbeddedConfig } from "../config.ts";
import { shippedAssets } from "./embedded_assets.ts";

/** A running embedded database. */
export interface EmbeddedDatabase {
  /** Absolute data directory. */
  dir: string;
  /** URI for the connector's own pool (a Unix socket in the data directory, or loopback). */
  uri: string;
  /** "postgres://postgres@127.0.0.1:5433/postgres" when SQL is served to users, else null. */
  sqlUri: string | null;
  /** Resolves (never rejects) when PGlite has failed: the connector must stop. */
  failed: Promise<Error>;
  /** Stops serving, shuts PGlite down cleanly, removes the lock. */
  stop(): Promise<void>;
}

/** The lock file's name inside the data directory. */
export const LOCK_FILE = "promscale.lock";

/** The sub-directory PGlite's PostgreSQL data goes in (PG_VERSION, base/, pg_wal/, …). */
export const PGDATA = "pgdata";

/** Unix sockets have a path limit of 107 bytes on Linux. */
const MAX_SOCKET_PATH = 100;

/** Startup of PGlite failed or the directory is unusable; one line. */
export class EmbeddedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EmbeddedError";
  }
}

function absolute(dir: string): string {
  if (dir.startsWith("/")) return dir.replace(/\/+$/, "") || "/";
  return `${Deno.cwd().replace(/\/$/, "")}/${dir.replace(/^\.\//, "").replace(/\/+$/, "")}`;
}

/**
 * Takes the directory's lock file; throws when another process holds it.
 * flock(2) goes away with the process, so a killed connector leaves no
 * stale lock behind.
 */
async function takeLock(dir: string): Promise<Deno.FsFile> {
  const path = `${dir}/${LOCK_FILE}`;
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  if (!(await file.tryLock(true))) {
    const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
    file.close();
    throw new EmbeddedError(
      `Cannot use the embedded database in "${dir}": another connector${
        holder ? ` (pid ${holder})` : ""
      } holds ${LOCK_FILE}; several connectors need a shared PostgreSQL (--db.uri)`,
    );
  }
  await file.truncate(0);
  await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  return file;
}

async function listenInternal(dir: string): Promise<{ listener: Deno.Listener; uri: string }> {
  const socketDir = dir;
  const path = `${socketDir}/.s.PGSQL.5432`;
  if (path.length <= MAX_SOCKET_PATH) {
    await Deno.remove(path).catch(() => {}); // left by a killed connector; we hold the lock
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    return {
      listener,
      uri: `postgres://postgres@localhost:5432/postgres?host=${encodeURIComponent(socketDir)}`,
    };
  }
  // A data directory with a long path: a random loopback port instead.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  return { listener, uri: `postgres://postgres@127.0.0.1:${port}/postgres` };
}

/**
 * Starts PGlite on `cfg.dir` and serves it. The caller logs where it runs.
 *
 * @throws EmbeddedError when the directory is locked or unusable.
 */
export async function startEmbedded(cfg: EmbeddedConfig): Promise<EmbeddedDatabase> {
  const dir = absolute(cfg.dir);
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await Deno.stat(dir);
    if (!st.isDirectory) throw new Error("not a directory");
  } catch (err) {
    throw new EmbeddedError(
      `Cannot use "${dir}" for the embedded database: ${(err as Error).message}`,
    );
  }
  const lock = await takeLock(dir);
  const cleanup: (() => Promise<void> | void)[] = [() => lock.close()];
  const undo = async () => {
    for (const f of cleanup.reverse()) await Promise.resolve(f()).catch(() => {});
  };
  try {
    const { PGlite } = await loadPglite();
    let db;
    try {
      db = await PGlite.create(`${dir}/${PGDATA}`, await shippedAssets());
    } catch (err) {
      throw new EmbeddedError(
        `Cannot start the embedded database in "${dir}/${PGDATA}": ${
          (err as Error).message ?? String(err)
        }`,
      );
    }
    cleanup.push(() => db.close());
    const failed = Promise.withResolvers<Error>();
    let failure: Error | null = null;
    const onFatal = (err: unknown) => {
      if (failure !== null) return;
      failure = new Error(
        `The embedded database stopped: ${(err as Error)?.message ?? String(err)}`,
      );
      failed.resolve(failure);
    };
    const turns = new BackendTurns(db);
    const internal = await listenInternal(dir);
    const servers: WireServer[] = [];
    servers.push(serveWire(internal.listener, turns, {
      idleInTransactionMs: 60_000,
      maxCopyBytes: 256 * 1024 * 1024,
      resetOnClose: false,
      onFatal,
    }));
    cleanup.push(() => servers[0].close());
    let sqlUri: string | null = null;
    if (cfg.sqlListen !== null) {
      let listener: Deno.Listener;
      try {
        listener = Deno.listen({ hostname: cfg.sqlListen.hostname, port: cfg.sqlListen.port });
      } catch (err) {
        throw new EmbeddedError(
          `Cannot listen on --db.embedded-sql-listen ${cfg.sqlListen.hostname}:${cfg.sqlListen.port}: ${
            (err as Error).message
          }`,
        );
      }
      const user = serveWire(listener, turns, {
        // A person at psql may pause; everyone else waits meanwhile.
        idleInTransactionMs: 30_000,
        maxCopyBytes: 256 * 1024 * 1024,
        resetOnClose: true,
        onFatal,
      });
      servers.push(user);
      cleanup.push(() => user.close());
      const a = listener.addr as Deno.NetAddr;
      const host = a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname;
      sqlUri = `postgres://postgres@${host}:${a.port}/postgres`;
    }
    let stopping: Promise<void> | null = null;
    return {
      dir,
      uri: internal.uri,
      sqlUri,
      failed: failed.promise,
      stop: () =>
        stopping ??= (async () => {
          for (const s of servers.reverse()) await s.close().catch(() => {});
          if (failure === null) await db.close().catch(() => {});
          if (internal.listener.addr.transport === "unix") {
            await Deno.remove(internal.listener.addr.path).catch(() => {});
          }
          await lock.truncate(0).catch(() => {});
          lock.close();
        })(),
    };
  } catch (err) {
    await undo();
    throw err;
  }
}
