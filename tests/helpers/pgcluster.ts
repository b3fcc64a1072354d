/**
 * A private PostgreSQL cluster for fault tests: its own data directory in a
 * temporary directory, its own port, trust authentication, fsync off. Tests
 * may stop, restart or kill it without touching the shared server on
 * 127.0.0.1:5432 that every other test uses.
 *
 * The server runs as the `postgres` OS user (initdb refuses root): when the
 * test runs as root, every command goes through `runuser -u postgres --`
 * and the directory is handed to that user.
 */
import { freePort } from "./ports.ts";
import { onCleanup } from "./procs.ts";

/** A running private cluster. */
export interface PgCluster {
  port: number;
  /** "postgres://postgres@127.0.0.1:<port>/postgres". */
  uri: string;
  /** The data directory. */
  dataDir: string;
  /** Stops the server ("fast": disconnects clients, clean shutdown). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data; resolves once it accepts connections. */
  start(): Promise<void>;
  /** stop(), wait `downMs`, start(). */
  restart(downMs?: number): Promise<void>;
  /** SIGKILL to the postmaster, as a crash (start() runs crash recovery). */
  kill9(): Promise<void>;
  /** Stops the server (immediate) and removes the directory. Idempotent; never throws. */
  destroy(): Promise<void>;
  /** The server log, for failure messages. */
  log(): Promise<string>;
}

/** The newest PostgreSQL bin directory (/usr/lib/postgresql/<version>/bin), or PG_BIN_DIR. */
export function pgBinDir(): string {
  const env = Deno.env.get("PG_BIN_DIR");
  if (env) return env;
  const versions: number[] = [];
  try {
    for (const e of Deno.readDirSync("/usr/lib/postgresql")) {
      const v = Number(e.name);
      if (!Number.isFinite(v)) continue;
      try {
        Deno.statSync(`/usr/lib/postgresql/${e.name}/bin/initdb`);
        versions.push(v);
      } catch {
        // No server binaries for this version (client only).
      }
    }
  } catch {
    // Not a Debian layout.
  }
  if (versions.length === 0) {
    throw new Error(
      "Cannot find PostgreSQL server binaries under /usr/lib/postgresql (set PG_BIN_DIR)",
    );
  }
  return `/usr/lib/postgresql/${Math.max(...versions)}/bin`;
}

async function run(cmd: string[], what: string): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`Cannot ${what}: exit code ${out.code}\n${text}`);
  return text;
}

/** uid and gid of a user, from /etc/passwd. */
function userIds(name: string): { uid: number; gid: number } | null {
  const passwd = Deno.readTextFileSync("/etc/passwd");
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

/**
 * Creates and starts a private cluster on a free port. It is destroyed by
 * `destroy()` or, at the latest, by `killAll()`.
 */
export async function startPgCluster(): Promise<PgCluster> {
  const bin = pgBinDir();
  const asRoot = Deno.uid() === 0;
  const pgUser = asRoot ? userIds("postgres") : null;
  if (asRoot && pgUser === null) throw new Error("Cannot run PostgreSQL as root: no postgres user");
  const as = (cmd: string[]) => (asRoot ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd);

  const dir = await Deno.makeTempDir({ prefix: "promscale-pgcluster-" });
  const dataDir = `${dir}/data`;
  const logFile = `${dir}/server.log`;
  const port = freePort();
  let destroyed: Promise<void> | null = null;

  const pgCtl = (args: string[], what: string) =>
    run(as([`${bin}/pg_ctl`, "-D", dataDir, ...args]), what);
  const start = async () => {
    await pgCtl(
      [
        "-l",
        logFile,
        "-w",
        "-t",
        "60",
        "-o",
        `-c listen_addresses=127.0.0.1 -p ${port} -c unix_socket_directories=${dir} ` +
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off " +
        "-c shared_buffers=16MB -c max_connections=60",
        "start",
      ],
      `start the private PostgreSQL cluster on port ${port}`,
    );
  };
  const stop = async (mode = "fast") => {
    await pgCtl(["-w", "-t", "60", "-m", mode, "stop"], "stop the private PostgreSQL cluster");
  };
  const destroy = () =>
    destroyed ??= (async () => {
      try {
        await stop("immediate");
      } catch {
        // Not running.
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
  onCleanup(destroy);

  try {
    if (pgUser) await Deno.chown(dir, pgUser.uid, pgUser.gid);
    await run(
      as([
        `${bin}/initdb`,
        "-D",
        dataDir,
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
      ]),
      "initialise a private PostgreSQL cluster",
    );
    await start();
  } catch (err) {
    await destroy();
    throw err;
  }

  return {
    port,
    uri: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dataDir,
    stop: () => stop(),
    start,
    restart: async (downMs = 0) => {
      await stop();
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    kill9: async () => {
      const pid = Number((await Deno.readTextFile(`${dataDir}/postmaster.pid`)).split("\n")[0]);
      Deno.kill(pid, "SIGKILL");
      // The postmaster is gone when its pid file is stale; the children
      // notice within moments and exit.
      for (let i = 0; i < 100; i++) {
        try {
          Deno.kill(pid, "SIGCONT");
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    destroy,
    log: () => Deno.readTextFile(logFile).catch(() => ""),
  };
}
