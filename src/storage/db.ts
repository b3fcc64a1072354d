/**
 * The PostgreSQL pool (postgres.js) and the gate in front of it. postgres.js
 * queues queries without limit when every connection is busy; the gate
 * bounds that queue so an overloaded connector answers 503 (Prometheus
 * retries) instead of piling up requests and memory.
 */
import { postgres, type Sql } from "../../deps.ts";
import { UnavailableError } from "../errors.ts";
import * as net from "node:net";

/** Pool settings, from the resolved Config. */
export interface PoolOptions {
  uri: string;
  max: number;
  app: string;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  sslMode: string;
}

/** Opens the pool. Connections are made lazily, on first use. */
export function openPool(o: PoolOptions): Sql {
  const ssl = o.sslMode === "disable" || o.sslMode === "allow" || o.sslMode === "prefer"
    ? (o.sslMode === "prefer" ? "prefer" : false)
    : o.sslMode === "require"
    ? "require"
    : "verify-full";
  const options = {
    max: o.max,
    ssl: ssl as "prefer",
    connect_timeout: Math.max(1, Math.ceil(o.connectTimeoutMs / 1000)),
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    prepare: true,
    onnotice: () => {},
    // Delay before reconnecting after a failed connect, in seconds. The
    // default grows to 20 s, and every query meanwhile waits for it: during
    // an outage Prometheus would wait instead of getting a quick 503, and
    // the connector would notice the database is back only that late.
    backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** retries, 1),
    connection: {
      application_name: o.app,
      statement_timeout: o.statementTimeoutMs,
      // No JIT compilation for the connector's own statements: each was
      // measured slower with it (the planner's estimates for per-series
      // look-ups pass jit_above_cost, and compiling never pays back on a
      // statement run once): remote read of 1,000 series × 6 h 666 → 169 ms,
      // the PromQL fetch, a reconcile pass (bench/RESULTS.md). Users' own
      // SQL on their own connections keeps the server's setting.
      jit: "off",
    },
    // postgres.js does not set TCP_NODELAY; without it a COPY (data, then
    // CopyDone) stalls ~40 ms on delayed ACKs. Connect the socket ourselves.
    socket: nodelaySocket,
  };
  const { uri, path } = unixSocket(o.uri);
  // `socket` is a documented option that the type declarations lack.
  return postgres(uri, { ...options, ...(path ? { path } : {}) } as Parameters<typeof postgres>[1]);
}

/**
 * Finds a Unix socket in a connection URI, as libpq accepts it: a host
 * that is a directory, percent-encoded (`postgres://u@%2Fvar%2Frun%2Fpostgresql/db`),
 * or a `host=/dir` query parameter. postgres.js would look the first up in
 * DNS and send the second to the server as a setting. Returns the URI
 * without the `host` parameter and the socket's path, if any.
 */
export function unixSocket(uri: string): { uri: string; path?: string } {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return { uri };
  }
  const port = url.port || "5432";
  const param = url.searchParams.get("host");
  if (param?.startsWith("/")) {
    url.searchParams.delete("host");
    return { uri: url.toString(), path: `${param}/.s.PGSQL.${port}` };
  }
  const host = decodeURIComponent(url.hostname);
  if (host.startsWith("/")) return { uri, path: `${host}/.s.PGSQL.${port}` };
  return { uri };
}

interface SocketTarget {
  host: string[];
  port: number[];
  path?: string | false;
}

let nextHost = 0;

/**
 * Returns the socket at once, still connecting. postgres.js treats a
 * `socket` option that rejects as a failed query but never releases the
 * connection slot: after `max` refused connects (the database restarting)
 * every later query waits forever. A socket that fails on its own, with
 * `error` then `close`, goes through postgres.js's normal path instead: the
 * queries get the error and the slot is reconnected on the next query.
 * Writes made while connecting are buffered by the socket.
 */
function nodelaySocket(opts: SocketTarget): net.Socket {
  const i = nextHost++ % opts.host.length;
  const s = opts.path
    ? net.connect({ path: opts.path })
    : net.connect({ host: opts.host[i], port: opts.port[i] ?? opts.port[0] });
  s.once("connect", () => s.setNoDelay(true));
  return s;
}

/**
 * Bounds concurrent database work: at most `slots` at once, at most
 * `maxWaiting` queued for at most `waitMs`; beyond that, 503.
 */
export class Gate {
  #active = 0;
  #waiting: { resolve: () => void; timer: ReturnType<typeof setTimeout> }[] = [];
  #closed = false;
  /**
   * Called when a unit of gated work ends, with its time from getting the
   * slot (seconds) and whether it failed; /metrics counts database requests
   * with it. Work refused by the gate (503) never ran and is not reported.
   */
  onDone?: (seconds: number, failed: boolean) => void;

  constructor(readonly slots: number, readonly maxWaiting: number, readonly waitMs: number) {}

  /** Connections in use (or about to be) by gated work. */
  get active(): number {
    return this.#active;
  }

  /** Requests queued for a connection. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Runs `fn` when a slot is free; 503 when the queue is full or the wait too long. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire();
    const start = performance.now();
    let failed = true;
    try {
      const result = await fn();
      failed = false;
      return result;
    } finally {
      this.#release();
      this.onDone?.((performance.now() - start) / 1000, failed);
    }
  }

  /** Refuses new work from now on (shutdown). */
  close(): void {
    this.#closed = true;
  }

  #acquire(): Promise<void> {
    if (this.#closed) return Promise.reject(new UnavailableError("Connector is shutting down"));
    if (this.#active < this.slots) {
      this.#active++;
      return Promise.resolve();
    }
    if (this.#waiting.length >= this.maxWaiting) {
      return Promise.reject(
        new UnavailableError(`Database pool exhausted: ${this.slots} connections busy`),
      );
    }
    return new Promise((resolve, reject) => {
      const entry = {
        resolve,
        timer: setTimeout(() => {
          const k = this.#waiting.indexOf(entry);
          if (k >= 0) this.#waiting.splice(k, 1);
          reject(
            new UnavailableError(
              `Database pool exhausted: no connection free within ${this.waitMs} ms`,
            ),
          );
        }, this.waitMs),
      };
      this.#waiting.push(entry);
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve(); // the slot passes to the waiter
    } else {
      this.#active--;
    }
  }
}
