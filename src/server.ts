/**
 * Routing and lifecycle only: which path goes to which handler, the cap on
 * requests in flight, request metrics, and a server that shuts down by
 * finishing what it has accepted.
 */
import { HttpError, toResponse, UnavailableError } from "./errors.ts";
import type { ConnectorMetrics } from "./telemetry/metrics.ts";
import type { Logger } from "./telemetry/log.ts";
import type { HealthState } from "./health.ts";
import { isPromqlPath } from "./promql/api.ts";

/** A request handler. */
export type Handler = (req: Request) => Promise<Response>;

/** What the router dispatches to. */
export interface Routes {
  write: Handler;
  read?: Handler;
  /** Prometheus's query API (`/api/v1/query`, …; src/promql/api.ts). */
  promql?: Handler;
  /**
   * The database's health as last probed in the background: /healthz runs
   * no query and takes no request slot.
   */
  health: () => HealthState;
  telemetryPath: string;
  /** Returns a response when the request is refused (auth), else null. */
  authorize?: (req: Request) => Response | null;
  /** Paths served without `authorize` (--web.auth.ignore-path). */
  authIgnorePaths?: readonly string[];
  /** The status page (`GET /`) and its JSON twin (`GET /api/v1/status/ha`). */
  status?: (req: Request, as: "html" | "json") => Promise<Response>;
  /** Write requests served at once; beyond that, 503 so Prometheus retries later. */
  maxInFlight: number;
  /** Read requests served at once, apart from writes; beyond that, 503 (default: maxInFlight). */
  maxInFlightReads?: number;
}

/** Builds the router. */
export function router(r: Routes, metrics: ConnectorMetrics, log: Logger): Handler {
  let inFlight = 0;
  // Writes and reads have slots of their own: slow reads never take a write's.
  const slots = new InFlightSlots(r.maxInFlight, r.maxInFlightReads ?? r.maxInFlight);
  const refusals = new RefusalLog(log);
  metrics.inFlight.set({}, 0);
  return async (req) => {
    const url = new URL(req.url);
    const path = url.pathname;
    const handler = path === "/write" || path === "/api/v1/write"
      ? "write"
      : path === "/read" || path === "/api/v1/read"
      ? "read"
      : path === r.telemetryPath
      ? "metrics"
      : path === "/healthz"
      ? "healthz"
      : path === "/"
      ? "status"
      : path === "/api/v1/status/ha"
      ? "status_api"
      : isPromqlPath(path)
      ? "promql"
      : "other";
    const started = performance.now();
    let res: Response;
    if (handler === "healthz") {
      // Answered from memory at once: never counted against, nor waiting
      // for, the slots of writes and reads.
      res = healthResponse(r.health());
    } else if (!slots.take(handler)) {
      res = toResponse(slots.refusal(handler));
    } else {
      inFlight++;
      metrics.inFlight.set({}, inFlight);
      try {
        res = await dispatch(handler, req, r, metrics);
      } catch (err) {
        log.error("Unhandled error serving request", { path, err });
        res = toResponse(err);
      } finally {
        slots.give(handler);
        inFlight--;
        metrics.inFlight.set({}, inFlight);
      }
    }
    metrics.requests.inc({ handler, code: String(res.status) });
    const seconds = (performance.now() - started) / 1000;
    metrics.requestDuration.observe(seconds, { handler });
    if (handler === "write") metrics.ingestRequest(res.status, seconds);
    if (res.status >= 400 && (handler === "write" || handler === "read")) {
      await refusals.note(handler, res);
    }
    return res;
  };
}

/** Separate in-flight counts and limits for writes and reads. */
class InFlightSlots {
  #writes = 0;
  #reads = 0;
  constructor(readonly maxWrites: number, readonly maxReads: number) {}

  take(handler: string): boolean {
    if (handler === "write") {
      if (this.#writes >= this.maxWrites) return false;
      this.#writes++;
    } else if (handler === "read") {
      if (this.#reads >= this.maxReads) return false;
      this.#reads++;
    }
    return true;
  }

  give(handler: string): void {
    if (handler === "write") this.#writes--;
    else if (handler === "read") this.#reads--;
  }

  refusal(handler: string): HttpError {
    return handler === "read"
      ? new HttpError(503, `Too many read requests in flight (limit ${this.maxReads})`)
      : new HttpError(503, `Too many requests in flight (limit ${this.maxWrites})`);
  }
}

/**
 * Logs refused requests with their reason, at most once per 10 s per
 * handler and status, with the number refused since: a follower replica
 * retried every few hundred milliseconds, or an outage, must not flood the
 * log. 4xx (Prometheus drops the data) and 5xx (it retries) are warnings.
 */
class RefusalLog {
  #last = new Map<string, { at: number; count: number }>();
  constructor(readonly log: Logger) {}

  async note(handler: string, res: Response): Promise<void> {
    const key = `${handler} ${res.status}`;
    const now = performance.now();
    const entry = this.#last.get(key);
    if (entry && now - entry.at < 10_000) {
      entry.count++;
      return;
    }
    const reason = (await res.clone().text().catch(() => "")).trim();
    this.#last.set(key, { at: now, count: 0 });
    this.log.warn(
      res.status >= 500 ? "Request refused, the sender will retry" : "Request rejected",
      { handler, status: res.status, reason, refused_since_last_log: entry?.count ?? 0 },
    );
  }
}

async function dispatch(
  handler: string,
  req: Request,
  r: Routes,
  metrics: ConnectorMetrics,
): Promise<Response> {
  // Every endpoint but /healthz needs credentials, unknown paths included,
  // so that a 404 tells an unauthenticated client nothing.
  const path = new URL(req.url).pathname;
  const refused = r.authIgnorePaths?.includes(path) ? null : r.authorize?.(req);
  if (refused) return refused;
  if ((handler === "status" || handler === "status_api") && r.status) {
    return await r.status(req, handler === "status" ? "html" : "json");
  }
  if (handler === "other" || handler === "status" || handler === "status_api") {
    return toResponse(new HttpError(404, `Not found: ${path}`));
  }
  if (handler === "metrics") {
    return new Response(metrics.registry.render(), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  }
  if (handler === "write") return await r.write(req);
  if (handler === "promql") {
    return r.promql ? await r.promql(req) : toResponse(new HttpError(404, `Not found: ${path}`));
  }
  if (!r.read) return toResponse(new HttpError(404, "Remote read is not enabled"));
  return await r.read(req);
}

/** 200 "ok", or the probe's reason as a 503 through the one error path (with Retry-After). */
function healthResponse(h: HealthState): Response {
  if (!h.ok) return toResponse(new UnavailableError(h.reason));
  return new Response("ok\n", { headers: { "content-type": "text/plain; charset=utf-8" } });
}

/** A running HTTP server. */
export interface RunningServer {
  hostname: string;
  port: number;
  /** Stops accepting, waits for requests in flight to finish. */
  shutdown(): Promise<void>;
  finished: Promise<void>;
}

/** Listens; resolves once the socket is bound (throws when it cannot be). */
export function listen(
  handler: Handler,
  opts: { hostname: string; port: number; cert?: string; key?: string },
  log: Logger,
): Promise<RunningServer> {
  const tls = opts.cert && opts.key ? { cert: opts.cert, key: opts.key } : {};
  const server = Deno.serve({
    hostname: opts.hostname,
    port: opts.port,
    ...tls,
    onListen: () => {},
    onError: (err) => {
      log.error("HTTP server error", { err });
      return toResponse(err);
    },
  }, handler);
  const addr = server.addr as Deno.NetAddr;
  return Promise.resolve({
    hostname: addr.hostname,
    port: addr.port,
    shutdown: () => server.shutdown(),
    finished: server.finished,
  });
}
