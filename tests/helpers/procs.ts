/**
 * A small process manager for integration and end-to-end tests: spawn a
 * process with its output captured (the last lines, for failure messages),
 * wait for it to answer HTTP, stop it, and clean up everything a test
 * started with one `killAll()` in its `finally`.
 *
 * Also starts the processes the end-to-end tests put around the connector:
 * the connector itself (`deno run -A main.ts`, as scripts and users do),
 * prometheus-node-exporter and HAProxy.
 *
 * Set `TEST_VERBOSE=1` to echo every process's output to stderr as it comes.
 */
import { freePort } from "./ports.ts";

/** Lines of output kept per process. */
const RING_LINES = 200;
/** Grace period between SIGTERM and SIGKILL in `stop`/`killAll`. */
const DEFAULT_GRACE_MS = 15_000;
const VERBOSE = ["1", "true", "yes"].includes(Deno.env.get("TEST_VERBOSE") ?? "");

/** The repository root (where main.ts and deno.json are). */
export const REPO_ROOT: string = decodeURIComponent(new URL("../../", import.meta.url).pathname)
  .replace(/\/$/, "");

/** A process started by `spawnProcess`. */
export interface Proc {
  /** Name used in messages ("connector", "haproxy", …). */
  readonly name: string;
  readonly pid: number;
  /** True once the process has exited. */
  readonly exited: boolean;
  /** Sends a signal; does nothing if the process has already exited. */
  kill(signal?: Deno.Signal): void;
  /** Sends SIGKILL; does nothing if the process has already exited. */
  kill9(): void;
  /** SIGSTOP: freezes the process (as a long GC pause or a stalled VM would). */
  pause(): void;
  /** SIGCONT: lets a paused process go on. */
  resume(): void;
  /** Resolves once the process has exited and its output is read. */
  wait(): Promise<Deno.CommandStatus>;
  /**
   * SIGTERM (and SIGCONT, so a paused process gets to handle it), then
   * SIGKILL after `graceMs`; resolves with the exit status.
   */
  stop(graceMs?: number): Promise<Deno.CommandStatus>;
  /** The last lines the process wrote (stdout and stderr interleaved), for messages. */
  output(): string;
}

/** Options for `spawnProcess`. */
export interface SpawnOptions {
  /** Added to (and overriding) the test process's environment. */
  env?: Record<string, string>;
  cwd?: string;
}

const live = new Set<Proc>();
const cleanups: (() => Promise<void> | void)[] = [];

// Last resort when a test process ends without its `finally` (an uncaught
// error, Ctrl-C): never leave a Prometheus or connector running behind.
globalThis.addEventListener("unload", () => {
  for (const p of live) p.kill9();
});

class Ring {
  #lines: string[] = [];
  constructor(readonly max: number) {}
  push(line: string) {
    this.#lines.push(line);
    if (this.#lines.length > this.max) this.#lines.splice(0, this.#lines.length - this.max);
  }
  toString(): string {
    return this.#lines.join("\n");
  }
}

async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
  stopSignal: Promise<void>,
): Promise<void> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let partial = "";
  let stopped = false;
  // A grandchild holding the pipe open must not keep us waiting forever once
  // the process itself has exited.
  stopSignal.then(() => {
    stopped = true;
    reader.cancel().catch(() => {});
  });
  try {
    while (!stopped) {
      const { value, done } = await reader.read();
      if (done) break;
      const parts = (partial + value).split("\n");
      partial = parts.pop() ?? "";
      for (const p of parts) onLine(p);
    }
  } catch {
    // Cancelled or the pipe broke: what we have is all there is.
  } finally {
    if (partial) onLine(partial);
    reader.releaseLock();
  }
}

/**
 * Starts `cmd args…` with stdin closed and stdout/stderr captured, and
 * registers it for `killAll()`.
 */
export function spawnProcess(
  name: string,
  cmd: string | URL,
  args: string[],
  opts: SpawnOptions = {},
): Proc {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      env: opts.env,
      cwd: opts.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    throw new Error(`Cannot start ${name}: "${cmd}": ${(err as Error).message}`);
  }
  const ring = new Ring(RING_LINES);
  const onLine = (tag: string) => (line: string) => {
    ring.push(`${tag} ${line}`);
    if (VERBOSE) console.error(`[${name}:${child.pid}] ${line}`);
  };
  let exited = false;
  const { promise: stopReading, resolve: stopReadingNow } = Promise.withResolvers<void>();
  const drained = Promise.all([
    readLines(child.stdout, onLine("out:"), stopReading),
    readLines(child.stderr, onLine("err:"), stopReading),
  ]);
  const status = (async () => {
    const s = await child.status;
    exited = true;
    const timer = setTimeout(stopReadingNow, 2000);
    await drained;
    clearTimeout(timer);
    stopReadingNow();
    return s;
  })();

  const kill = (signal: Deno.Signal = "SIGTERM") => {
    if (exited) return;
    try {
      child.kill(signal);
    } catch {
      // Exited between the check and the kill.
    }
  };
  const proc: Proc = {
    name,
    pid: child.pid,
    get exited() {
      return exited;
    },
    kill,
    kill9: () => kill("SIGKILL"),
    pause: () => kill("SIGSTOP"),
    resume: () => kill("SIGCONT"),
    wait: () => status,
    stop: async (graceMs = DEFAULT_GRACE_MS) => {
      if (exited) return await status;
      kill("SIGTERM");
      kill("SIGCONT");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const escalate = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          kill("SIGKILL");
          resolve();
        }, graceMs);
      });
      await Promise.race([status, escalate]);
      clearTimeout(timer);
      return await status;
    },
    output: () => ring.toString(),
  };
  live.add(proc);
  status.then(() => live.delete(proc));
  return proc;
}

/** Registers `fn` to run (in reverse order of registration) at `killAll()`. */
export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

/** Creates a temporary directory that `killAll()` removes. */
export async function tempDir(prefix = "promscale-test-"): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  onCleanup(() => Deno.remove(dir, { recursive: true }).catch(() => {}));
  return dir;
}

/**
 * Stops every process still running (SIGTERM, SIGKILL after `graceMs`),
 * then runs the registered cleanups (temporary directories…). Call it in a
 * test's `finally`. Never throws.
 */
export async function killAll(graceMs = 5_000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(graceMs).catch(() => {})));
  while (cleanups.length) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch {
      // Cleanup is best effort.
    }
  }
}

/** Options for `waitForHttp`. */
export interface WaitForHttpOptions {
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Status (or statuses) that count as ready (default 200). */
  expectStatus?: number | number[];
  /** Poll interval (default 100 ms). */
  intervalMs?: number;
  /** Fail at once if this process exits, and put its output in the error. */
  proc?: Proc;
  /** Request headers (for auth). */
  headers?: HeadersInit;
}

/** Polls GET `url` until it answers an expected status; throws on timeout. */
export async function waitForHttp(url: string, opts: WaitForHttpOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const expected = [opts.expectStatus ?? 200].flat();
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  while (true) {
    if (opts.proc?.exited) {
      const s = await opts.proc.wait();
      throw new Error(
        `${opts.proc.name} exited with code ${s.code} before ${url} was ready (last: ${last})\n` +
          opts.proc.output(),
      );
    }
    try {
      const res = await fetch(url, {
        headers: opts.headers,
        signal: AbortSignal.timeout(Math.max(100, Math.min(2000, deadline - Date.now()))),
      });
      await res.body?.cancel();
      if (expected.includes(res.status)) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for GET ${url} to answer ${
          expected.join(" or ")
        } (last: ${last})` +
          (opts.proc ? `\n${opts.proc.name} output:\n${opts.proc.output()}` : ""),
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

/** A started HTTP service. */
export interface Service {
  proc: Proc;
  port: number;
  /** "127.0.0.1:<port>", for scrape targets and load balancer backends. */
  address: string;
  /** "http://127.0.0.1:<port>". */
  url: string;
  /**
   * SIGTERM, SIGKILL after 15 s; resolves with the exit code (128 + the
   * signal's number when the process did not catch it: 143 for SIGTERM).
   */
  stop(): Promise<number>;
}

function service(proc: Proc, port: number): Service {
  return {
    proc,
    port,
    address: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    stop: async () => (await proc.stop()).code,
  };
}

/** Options for `startConnector`. */
export interface ConnectorOptions {
  /** --db.uri */
  dbUri: string;
  /** Listen port (default: a free one). */
  port?: number;
  /** More command-line flags. */
  args?: string[];
  /** More environment (PROMSCALE_* …). */
  env?: Record<string, string>;
  /** How long to wait for /healthz (default 60 s). */
  timeoutMs?: number;
  /** A command that runs the connector, e.g. `["faketime", "-f", "-120s"]` (it must exec it). */
  wrapper?: string[];
}

/** How {@linkcode spawnConnector} runs the connector. */
export interface ConnectorCommandOptions extends SpawnOptions {
  /** Process name in messages (default "connector"). */
  name?: string;
  /** Deno's own flags, before main.ts (`--inspect=…`, `--cpu-prof`). */
  denoFlags?: string[];
  /** A command that runs the connector, e.g. `["faketime", "-f", "-120s"]` (it must exec it). */
  wrapper?: string[];
}

/**
 * The one command line that runs the connector from a checkout as users do:
 * `deno run -A [denoFlags] main.ts …args`, in `cwd` (default this
 * checkout), with NO_COLOR set. For a test that needs `Deno.Command` itself
 * (its whole output at once); others use {@linkcode spawnConnector}.
 */
export function connectorCommand(
  args: string[],
  opts: ConnectorCommandOptions = {},
): { cmd: string; args: string[]; cwd: string; env: Record<string, string> } {
  const deno = ["run", "-A", ...(opts.denoFlags ?? []), "main.ts", ...args];
  const [cmd, ...pre] = opts.wrapper?.length
    ? [...opts.wrapper, Deno.execPath()]
    : [Deno.execPath()];
  return {
    cmd,
    args: [...pre, ...deno],
    cwd: opts.cwd ?? REPO_ROOT,
    env: { NO_COLOR: "1", ...opts.env },
  };
}

/**
 * Starts the connector from the checkout (`deno run -A main.ts …args`, see
 * {@linkcode connectorCommand}) and returns at once; {@linkcode startConnector}
 * also waits for it to answer.
 */
export function spawnConnector(args: string[], opts: ConnectorCommandOptions = {}): Proc {
  const c = connectorCommand(args, opts);
  return spawnProcess(opts.name ?? "connector", c.cmd, c.args, { cwd: c.cwd, env: c.env });
}

/**
 * Runs the connector from the checkout as users do (`deno run -A main.ts
 * --db.uri … --web.listen-address 127.0.0.1:<port> …args`) and waits for
 * GET /healthz to answer 200.
 */
export async function startConnector(opts: ConnectorOptions): Promise<Service> {
  const port = opts.port ?? freePort();
  const proc = spawnConnector([
    "--db.uri",
    opts.dbUri,
    "--web.listen-address",
    `127.0.0.1:${port}`,
    ...(opts.args ?? []),
  ], { env: opts.env, wrapper: opts.wrapper });
  const svc = service(proc, port);
  try {
    await waitForHttp(`${svc.url}/healthz`, { timeoutMs: opts.timeoutMs ?? 60_000, proc });
  } catch (err) {
    await proc.stop(2_000);
    throw err;
  }
  return svc;
}

/** Path of the node exporter binary (Debian's name; override with NODE_EXPORTER_BIN). */
export const NODE_EXPORTER_BIN = Deno.env.get("NODE_EXPORTER_BIN") ??
  "/usr/bin/prometheus-node-exporter";

/** Options for `startNodeExporter`. */
export interface NodeExporterOptions {
  /** Collectors to enable (default cpu, meminfo, loadavg); e.g. add "time" for node_time_seconds. */
  collectors?: string[];
}

/**
 * Runs prometheus-node-exporter on a free port with only the cpu, meminfo
 * and loadavg collectors (fast scrapes, still a few dozen series; others
 * through `opts.collectors`), and waits for /metrics.
 */
export async function startNodeExporter(opts: NodeExporterOptions = {}): Promise<Service> {
  const port = freePort();
  const collectors = opts.collectors ?? ["cpu", "meminfo", "loadavg"];
  const proc = spawnProcess("node_exporter", NODE_EXPORTER_BIN, [
    `--web.listen-address=127.0.0.1:${port}`,
    "--collector.disable-defaults",
    ...collectors.map((c) => `--collector.${c}`),
  ]);
  const svc = service(proc, port);
  try {
    await waitForHttp(`${svc.url}/metrics`, { timeoutMs: 30_000, proc });
  } catch (err) {
    await proc.stop(2_000);
    throw err;
  }
  return svc;
}

/** Path of the HAProxy binary (override with HAPROXY_BIN). */
export const HAPROXY_BIN = Deno.env.get("HAPROXY_BIN") ?? "/usr/sbin/haproxy";

/** Options for `startHaproxy`. */
export interface HaproxyOptions {
  /** Path of the backends' health check; `null` for a plain TCP check (default "/healthz"). */
  healthPath?: string | null;
  /** Milliseconds between health checks (default 500). */
  checkIntervalMs?: number;
}

/** A running HAProxy. */
export interface Haproxy extends Service {
  /** The stats page ("http://127.0.0.1:<port>/stats"). */
  statsUrl: string;
  /** The HAProxy config file, for failure messages. */
  configFile: string;
  /** Each backend ("host:port" as given) → its state ("UP", "DOWN", "UP 1/2", …). */
  backendStatus(): Promise<Record<string, string>>;
}

/**
 * Runs HAProxy in front of `backends` ("host:port"): HTTP mode, round
 * robin per request (client keep-alive does not pin a client to a server),
 * health checks every 500 ms taking a dead backend out after 2 failures,
 * and a request whose connection to a backend fails is retried (up to 3
 * times) on another one.
 */
export async function startHaproxy(
  backends: string[],
  opts: HaproxyOptions = {},
): Promise<Haproxy> {
  if (backends.length === 0) throw new Error("Cannot start haproxy: no backends");
  const port = freePort();
  const statsPort = freePort();
  const dir = await tempDir("promscale-haproxy-");
  const inter = opts.checkIntervalMs ?? 500;
  const healthPath = opts.healthPath === undefined ? "/healthz" : opts.healthPath;
  const config = [
    "global",
    "  log stdout format raw local0 info",
    "  maxconn 4096",
    "",
    "defaults",
    "  mode http",
    "  log global",
    "  option httplog",
    "  timeout connect 500ms",
    "  timeout client 60s",
    "  timeout server 60s",
    "  timeout http-request 30s",
    "  timeout http-keep-alive 30s",
    `  timeout check ${inter}ms`,
    // A request whose connection attempt fails (backend killed, not yet
    // marked down) is retried, the retries going to another server.
    "  retries 3",
    "  option redispatch 1",
    "  option http-keep-alive",
    // The default, spelled out: each request on a keep-alive client
    // connection is balanced anew rather than sticking to the last server.
    "  no option prefer-last-server",
    "",
    "frontend fe",
    `  bind 127.0.0.1:${port}`,
    "  default_backend be",
    "",
    "backend be",
    "  balance roundrobin",
    ...(healthPath === null
      ? []
      : [`  option httpchk GET ${healthPath}`, "  http-check expect status 200"]),
    `  default-server check inter ${inter}ms fastinter ${inter}ms downinter ${inter}ms fall 2 rise 1`,
    ...backends.map((b, i) => `  server b${i} ${b}`),
    "",
    "listen stats",
    `  bind 127.0.0.1:${statsPort}`,
    "  stats enable",
    "  stats uri /stats",
    "",
  ].join("\n");
  const configFile = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(configFile, config);
  // -db: foreground, no daemon, no master-worker: one process to signal.
  const proc = spawnProcess("haproxy", HAPROXY_BIN, ["-db", "-f", configFile]);
  const statsUrl = `http://127.0.0.1:${statsPort}/stats`;
  try {
    await waitForHttp(statsUrl, { timeoutMs: 15_000, proc });
  } catch (err) {
    await proc.stop(2_000);
    throw new Error(`${(err as Error).message}\nconfig:\n${config}`);
  }
  const backendStatus = async () => {
    const res = await fetch(`${statsUrl};csv`);
    const csv = await res.text();
    const [header, ...rows] = csv.replace(/^# /, "").trim().split("\n").map((l) => l.split(","));
    const col = (n: string) => header.indexOf(n);
    const out: Record<string, string> = {};
    for (const r of rows) {
      const m = r[col("pxname")] === "be" ? /^b(\d+)$/.exec(r[col("svname")]) : null;
      if (m) out[backends[Number(m[1])]] = r[col("status")];
    }
    return out;
  };
  // Servers start as "UP 1/2" (up, unchecked); wait for each one's first
  // check so tests start from a settled state ("UP" or "DOWN").
  const deadline = Date.now() + 10 * inter + 1_000;
  while (Date.now() < deadline) {
    const states = Object.values(await backendStatus());
    if (states.every((s) => s === "UP" || s === "DOWN" || s === "no check")) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { ...service(proc, port), statsUrl, configFile, backendStatus };
}

/** Resident memory of process `pid` now and at its peak (VmRSS, VmHWM), in bytes. */
export function processMemory(pid: number): { rss: number; hwm: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 };
}
