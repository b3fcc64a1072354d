/**
 * Real Prometheus for end-to-end tests: scrapes the given targets as job
 * "node" (and/or further jobs with their own intervals) and remote-writes
 * to the connector, with a temporary config and TSDB directory.
 * `restart()` keeps the directory and port, so the WAL is replayed and
 * unsent samples are resent, as on a real restart. `pause()`/`resume()`
 * freeze and thaw it (SIGSTOP/SIGCONT).
 */
import { freePort } from "./ports.ts";
import { type Proc, spawnProcess, tempDir, waitForHttp } from "./procs.ts";

/** Path of the Prometheus binary (override with PROMETHEUS_BIN). */
export const PROMETHEUS_BIN = Deno.env.get("PROMETHEUS_BIN") ?? "/usr/bin/prometheus";

/** A scrape job of its own (name, targets, interval). */
export interface ScrapeJob {
  /** job_name (the `job` label). */
  name: string;
  /** "host:port" targets. */
  targets: string[];
  /** scrape_interval of this job (default: the global one). */
  interval?: string;
  /** scrape_timeout of this job (default: Prometheus's, at most the interval). */
  timeout?: string;
}

/** Options for `startPrometheus`. */
export interface PrometheusOptions {
  /** "host:port" targets scraped as job "node"; leave out for no job "node" (with `scrapeJobs`). */
  scrapeTargets?: string[];
  /** More scrape jobs, after job "node", each with its own interval. */
  scrapeJobs?: ScrapeJob[];
  /** Remote write endpoint ("http://127.0.0.1:<port>/write"); none when left out (a reader). */
  remoteWriteUrl?: string;
  /** global.external_labels, e.g. `{ cluster: "c1", __replica__: "r1" }`. */
  externalLabels?: Record<string, string>;
  /** global.scrape_interval (default "1s"). */
  scrapeInterval?: string;
  /**
   * Merged over the remote_write queue_config defaults
   * (`batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s`).
   */
  queueConfig?: Record<string, unknown>;
  /** Merged into the remote_write entry (headers, basic_auth, metadata_config, …). */
  remoteWrite?: Record<string, unknown>;
  /** Adds a remote_read entry. */
  remoteRead?: { url: string; readRecent: boolean };
  /**
   * Merged into the top-level config. Arrays under `scrape_configs`,
   * `remote_write` and `remote_read` are appended; other keys replace.
   */
  extraConfig?: Record<string, unknown>;
  /** More command-line flags. */
  args?: string[];
}

/** A running Prometheus. */
export interface Prometheus {
  /** The current process (a new one after `restart()`). */
  readonly proc: Proc;
  port: number;
  /** "http://127.0.0.1:<port>". */
  url: string;
  /** The TSDB directory (kept across restarts, removed by `killAll()`). */
  dataDir: string;
  /** The config file written. */
  configFile: string;
  /** SIGTERM (clean shutdown), SIGKILL after 15 s; resolves with the exit code. */
  stop(): Promise<number>;
  /** SIGKILL, as a crash; resolves once it is gone. */
  kill9(): Promise<void>;
  /** SIGSTOP: the process freezes (no scrapes, no sends) until `resume()`. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** Stops it if running (SIGTERM), starts it again on the same port and data, waits for ready. */
  restart(): Promise<void>;
  /** Instant query through the HTTP API; returns `data.result`. */
  query(expr: string): Promise<unknown[]>;
  /**
   * Waits until every scrape target has been scraped successfully once.
   * Prometheus 2.42 starts scraping only ~5 s after it is ready (target
   * discovery updates are batched every 5 s), after each (re)start.
   */
  waitForTargets(timeoutMs?: number): Promise<void>;
}

/** Builds the Prometheus config (JSON, which is YAML). */
export function prometheusConfig(opts: PrometheusOptions): Record<string, unknown> {
  const interval = opts.scrapeInterval ?? "1s";
  const config: Record<string, unknown> = {
    global: {
      scrape_interval: interval,
      evaluation_interval: interval,
      ...(opts.externalLabels ? { external_labels: opts.externalLabels } : {}),
    },
    scrape_configs: [
      ...(opts.scrapeTargets === undefined
        ? []
        : [{ job_name: "node", static_configs: [{ targets: opts.scrapeTargets }] }]),
      ...(opts.scrapeJobs ?? []).map((j) => ({
        job_name: j.name,
        ...(j.interval ? { scrape_interval: j.interval } : {}),
        ...(j.timeout ? { scrape_timeout: j.timeout } : {}),
        static_configs: [{ targets: j.targets }],
      })),
    ],
    remote_write: opts.remoteWriteUrl === undefined ? [] : [{
      url: opts.remoteWriteUrl,
      ...opts.remoteWrite,
      queue_config: {
        batch_send_deadline: "1s",
        min_backoff: "100ms",
        max_backoff: "1s",
        ...opts.queueConfig,
      },
    }],
    ...(opts.remoteRead
      ? { remote_read: [{ url: opts.remoteRead.url, read_recent: opts.remoteRead.readRecent }] }
      : {}),
  };
  for (const [k, v] of Object.entries(opts.extraConfig ?? {})) {
    const cur = config[k];
    config[k] = Array.isArray(cur) && Array.isArray(v) ? [...cur, ...v] : v;
  }
  return config;
}

/**
 * Options of a Prometheus that only reads the connector at `url` (remote
 * read, recent data too) and writes nowhere. Its evaluation interval is
 * Prometheus's default, 1m: the step of subqueries that give none, as the
 * connector's `--metrics.promql.default-subquery-step-interval`.
 */
export function readerOptions(url: string): PrometheusOptions {
  return { remoteRead: { url: `${url}/read`, readRecent: true }, scrapeInterval: "1m" };
}

/** Starts Prometheus on a free port and waits for /-/ready. */
export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const dir = await tempDir("promscale-prometheus-");
  const dataDir = `${dir}/data`;
  const configFile = `${dir}/prometheus.yml`;
  await Deno.mkdir(dataDir);
  await Deno.writeTextFile(configFile, JSON.stringify(prometheusConfig(opts), null, 2));
  const args = [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${dataDir}`,
    `--web.listen-address=127.0.0.1:${port}`,
    "--web.enable-lifecycle",
    ...(opts.args ?? []),
  ];

  let proc: Proc;
  const start = async () => {
    proc = spawnProcess("prometheus", PROMETHEUS_BIN, args);
    try {
      await waitForHttp(`${url}/-/ready`, { timeoutMs: 60_000, proc });
    } catch (err) {
      await proc.stop(2_000);
      throw err;
    }
  };
  await start();

  return {
    get proc() {
      return proc;
    },
    port,
    url,
    dataDir,
    configFile,
    stop: async () => (await proc.stop()).code,
    kill9: async () => {
      proc.kill9();
      await proc.wait();
    },
    pause: () => proc.pause(),
    resume: () => proc.resume(),
    restart: async () => {
      await proc.stop();
      await start();
    },
    query: async (expr: string) => {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = await res.json();
      if (body.status !== "success") {
        throw new Error(`Prometheus query "${expr}" failed: ${body.error ?? res.status}`);
      }
      return body.data.result;
    },
    waitForTargets: async (timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      let last = "no targets yet";
      while (true) {
        if (proc.exited) throw new Error(`prometheus exited\n${proc.output()}`);
        try {
          const res = await fetch(`${url}/api/v1/targets?state=active`);
          const targets: { scrapeUrl: string; health: string; lastError: string }[] =
            (await res.json()).data.activeTargets;
          if (targets.length > 0 && targets.every((t) => t.health === "up")) return;
          last = targets.map((t) => `${t.scrapeUrl}: ${t.health} ${t.lastError}`).join("; ") ||
            last;
        } catch (err) {
          last = (err as Error).message;
        }
        if (Date.now() >= deadline) {
          throw new Error(`Timed out after ${timeoutMs} ms waiting for scrape targets: ${last}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    },
  };
}
