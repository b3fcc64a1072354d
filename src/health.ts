/**
 * The database health that `/healthz` reports, probed in the background.
 *
 * A health check must be cheap and must never compete with writes: load
 * balancers call it often, and anyone may call it (it needs no
 * credentials). So `/healthz` runs no query: it answers from the outcome of
 * the last probe, a `SELECT 1` run about once a second whatever the number
 * of health checks. At most one probe is outstanding at a time (a probe
 * stuck on a dead database is not stacked on), and the answer is "down"
 * when the last probe failed, or when no probe has succeeded recently (a
 * stuck probe makes the state stale).
 *
 * @module
 */

/** Settings of {@linkcode HealthProbe}. */
export interface HealthProbeOptions {
  /** The probe: resolves when the database answers. */
  probe: () => Promise<unknown>;
  /** Time between the end of one probe and the start of the next (default 1 s). */
  intervalMs?: number;
  /** A probe not answered within this long counts as failed (default 2 s). */
  timeoutMs?: number;
  /** Healthy only while the last success is at most this old (default 3 s). */
  staleMs?: number;
  /** The clock, in ms (tests). */
  now?: () => number;
}

/** What `/healthz` answers. */
export interface HealthState {
  ok: boolean;
  /** Why not, in one line, when not ok. */
  reason: string;
}

/** The background probe; see the module comment. */
export class HealthProbe {
  readonly #o: Required<HealthProbeOptions>;
  #lastOkAt = -Infinity;
  #lastFailed = true;
  #reason = "database not probed yet";
  #pending: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Probes started so far (tests, metrics). */
  probes = 0;
  /** Probes that failed or were not answered in time (metrics). */
  failures = 0;

  constructor(o: HealthProbeOptions) {
    this.#o = {
      intervalMs: 1_000,
      timeoutMs: 2_000,
      staleMs: 3_000,
      now: () => performance.now(),
      ...o,
    };
  }

  /** Probes once (awaited), then keeps probing in the background until `stop()`. */
  async start(): Promise<void> {
    await this.probeNow();
    this.#schedule();
  }

  /** Stops probing. */
  stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    return Promise.resolve();
  }

  /** The state `/healthz` reports: synchronous, no I/O. */
  state(): HealthState {
    if (this.#lastFailed) return { ok: false, reason: this.#reason };
    const age = this.#o.now() - this.#lastOkAt;
    if (age > this.#o.staleMs) {
      return {
        ok: false,
        reason: `database not answering: last successful probe ${Math.round(age)} ms ago`,
      };
    }
    return { ok: true, reason: "" };
  }

  /**
   * Runs one probe unless one is outstanding (then waits for that one's
   * timeout or answer): never more than one at a time.
   */
  probeNow(): Promise<void> {
    if (this.#pending) return this.#pending;
    this.probes++;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${this.#o.timeoutMs} ms`)),
        this.#o.timeoutMs,
      );
    });
    const run = this.#o.probe();
    // The probe may outlive its timeout; it stays the outstanding one until
    // it settles, so that a hung database does not collect stuck probes.
    const settled = run.then(() => {}, () => {}).finally(() => {
      if (this.#pending === settled) this.#pending = null;
    });
    this.#pending = settled;
    return Promise.race([run, timeout]).then(
      () => {
        this.#lastOkAt = this.#o.now();
        this.#lastFailed = false;
        this.#reason = "";
      },
      (err) => {
        this.failures++;
        this.#lastFailed = true;
        this.#reason = `database unavailable: ${
          (err instanceof Error ? err.message : String(err)).split("\n")[0]
        }`;
      },
    ).finally(() => clearTimeout(timer));
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(async () => {
      if (this.#stopped) return;
      // A probe still outstanding from an earlier round is not doubled.
      if (!this.#pending) await this.probeNow();
      this.#schedule();
    }, this.#o.intervalMs);
  }
}
