/**
 * Legacy leader election through a PostgreSQL advisory lock (README,
 * "Legacy leader election"): connectors paired one-to-one with
 * Prometheus servers compete for `pg_try_advisory_lock(id)`; the holder
 * writes, the others drop.
 *
 * The lock belongs to a database session, so it lives on a dedicated
 * connection of its own (a postgres.js pool of one, the connection
 * reserved), never on the write pool, whose connections come and go. A
 * pool would reconnect silently and lose the lock without telling anyone,
 * so the holder watches its session two ways:
 *
 * - postgres.js reports the connection closing (`onclose`): the holder
 *   stops writing at once and competes again on a new connection;
 * - every tick (1 s) it asks the database whether this session still holds
 *   the lock; a failure, a timeout or a missing lock ends the leadership.
 *
 * Safety between the two connectors rests on two bounds, not on luck: a
 * holder writes only until `validityMs` after the start of its last
 * successful check, and a new holder starts writing only `graceMs`
 * (> `validityMs`) after it got the lock. The old holder's last confirmed
 * check started before the lock was freed, so it has stopped writing by
 * the time the new one starts, even when it never heard of the lost
 * connection. During the grace period the new holder answers 503, so its
 * Prometheus resends those samples and nothing is lost.
 *
 * Every `checkPeriodMs` (10 s) the holder also checks that its own
 * Prometheus has written within `prometheusTimeoutMs`; if not, it unlocks
 * so a peer can take over, and competes again only once its Prometheus
 * writes again.
 */
import { unixSocket } from "../storage/db.ts";
import { postgres, type Sql } from "../../deps.ts";
import { INTERNAL_LOCK_KEYS } from "../storage/locks.ts";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../telemetry/log.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";

type ReservedSql = Awaited<ReturnType<Sql["reserve"]>>;

/** What a request should do, as the election stands. */
export type ElectionDecision =
  /** This connector leads: write, and check `guard(epoch)` right before sending. */
  | { kind: "leader"; epoch: number }
  /** Another connector holds the lock: answer 2xx and drop. */
  | { kind: "follower" }
  /** This connector has just won the lock and may not write yet (grace period): 503. */
  | { kind: "starting"; waitMs: number }
  /** This connector holds the lock but could not confirm it lately: 503. */
  | { kind: "unconfirmed" }
  /** Not known yet (starting, connection lost, database unreachable): 503. */
  | { kind: "unknown" };

/** Settings of the election; the periods have production defaults and are shortened in tests. */
export interface AdvisoryLockElectionOptions {
  /** The advisory lock key (`pg_try_advisory_lock(bigint)`). */
  lockId: number;
  /** Give up the lock when the local Prometheus has not written for this long. */
  prometheusTimeoutMs: number;
  /**
   * Opens the dedicated pool of one connection; `onclose` must be called
   * when its connection closes (postgres.js's `onclose` option). See
   * {@linkcode openElectionPool}.
   */
  openPool: (onclose: () => void) => Sql;
  metrics: ConnectorMetrics;
  log: Logger;
  /** How often the holder checks its Prometheus (default 10 s, as documented). */
  checkPeriodMs?: number;
  /** How often the holder confirms its lock and a follower tries to get it (default 1 s). */
  tickMs?: number;
  /** How long after a confirmed check the holder may write (default 3 × tick). */
  validityMs?: number;
  /** How long a new holder waits before writing (default validity + 500 ms). */
  graceMs?: number;
  /** Pause before competing again after losing the lock unexpectedly (default 2 × tick). */
  rejoinPauseMs?: number;
  /** Local monotonic clock in ms (injected for tests). */
  now?: () => number;
}

/** Settings of the dedicated election connection. */
export interface ElectionPoolOptions {
  uri: string;
  /** application_name of the election session, so operators can find it in pg_stat_activity. */
  app: string;
  sslMode: string;
  connectTimeoutMs: number;
}

/** application_name of the election session unless told otherwise. */
export const ELECTION_APP_NAME = "promscale-election";

/**
 * Opens a postgres.js pool of exactly one connection for the election:
 * never closed for idleness or age (either would drop the lock), TCP
 * keepalives on both sides so a dead peer frees the lock within seconds.
 */
export function openElectionPool(o: ElectionPoolOptions, onclose: () => void): Sql {
  const ssl = o.sslMode === "disable" || o.sslMode === "allow"
    ? false
    : o.sslMode === "prefer" || o.sslMode === "require"
    ? o.sslMode
    : "verify-full";
  const options = {
    max: 1,
    ssl: ssl as "prefer",
    idle_timeout: 0,
    max_lifetime: null,
    connect_timeout: Math.max(1, Math.ceil(o.connectTimeoutMs / 1000)),
    keep_alive: 5,
    prepare: true,
    onnotice: () => {},
    onclose: () => onclose(),
    connection: {
      application_name: o.app,
      statement_timeout: 5_000,
      // The server notices a vanished connector (and frees the lock) after
      // about 5 + 2 × 3 s instead of the system's two hours.
      tcp_keepalives_idle: 5,
      tcp_keepalives_interval: 2,
      tcp_keepalives_count: 3,
    },
  };
  const { uri, path } = unixSocket(o.uri);
  return postgres(uri, { ...options, ...(path ? { path } : {}) } as Parameters<typeof postgres>[1]);
}

interface Session {
  pool: Sql;
  conn: ReservedSql | null;
  closed: boolean;
}

type State = "idle" | "unknown" | "follower" | "leader";

/** The election of one connector; `start()` it, ask `decision()` per request, `stop()` at the end. */
export class AdvisoryLockElection {
  readonly #o: AdvisoryLockElectionOptions;
  readonly #now: () => number;
  readonly #tickMs: number;
  readonly #checkPeriodMs: number;
  readonly #validityMs: number;
  readonly #graceMs: number;
  readonly #rejoinPauseMs: number;
  /** The key as text (bigint parameter), and its halves as pg_locks shows them. */
  readonly #key: string;
  readonly #classid: string;
  readonly #objid: string;

  #state: State = "idle";
  #session: Session | null = null;
  /** Bumped whenever leadership starts or ends: a write decided under another epoch is refused. */
  #epoch = 0;
  #writableFrom = Infinity;
  #validUntil = -Infinity;
  #nextPrometheusCheck = Infinity;
  #lastHeard = -Infinity;
  #pausedUntil = -Infinity;
  /** The current campaign's loss is counted already (one loss per campaign, not per try). */
  #lossCounted = false;

  #running = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #kicked = false;
  #tickWaiters: (() => void)[] = [];

  constructor(o: AdvisoryLockElectionOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => performance.now());
    this.#tickMs = o.tickMs ?? 1_000;
    this.#checkPeriodMs = o.checkPeriodMs ?? 10_000;
    this.#validityMs = o.validityMs ?? 3 * this.#tickMs;
    this.#graceMs = o.graceMs ?? this.#validityMs + 500;
    this.#rejoinPauseMs = o.rejoinPauseMs ?? 2 * this.#tickMs;
    if (this.#graceMs <= this.#validityMs) {
      throw new Error(
        `Leader election grace ${this.#graceMs} ms must exceed validity ${this.#validityMs} ms`,
      );
    }
    const internal = INTERNAL_LOCK_KEYS.get(o.lockId);
    if (internal !== undefined) {
      // Holding it would block the connectors' own work (migrations at
      // start, partitions, retention).
      throw new Error(
        `Leader election lock id "${o.lockId}" is the advisory lock of ${internal}; choose another`,
      );
    }
    const key = BigInt(o.lockId);
    // pg_locks shows a bigint key as classid = high 32 bits, objid = low
    // 32 bits (both unsigned), objsubid = 1.
    this.#key = key.toString();
    this.#classid = ((key >> 32n) & 0xffffffffn).toString();
    this.#objid = (key & 0xffffffffn).toString();
    o.metrics.electionLeader.collect = (g) => g.set({}, this.isLeader() ? 1 : 0);
  }

  /** The lock key. */
  get lockId(): number {
    return this.#o.lockId;
  }

  /** Starts competing in the background (once the local Prometheus has written). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops competing; a holder unlocks so a peer can take over at once. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
    this.#loop = null;
    if (this.#state === "leader") {
      this.#endLeadership("idle", false);
      this.#o.log.info("Leader election: stopping, releasing the advisory lock", {
        lock_id: this.#o.lockId,
      });
      await this.#unlock();
    }
    this.#state = "idle";
    await this.#closeSession();
    this.#wakeTickWaiters();
  }

  /** Records that the local Prometheus has just written; competes again if it had given up. */
  heard(): void {
    this.#lastHeard = this.#now();
    if (this.#state === "idle" && this.#running) {
      this.#state = "unknown";
      this.#kick();
    }
  }

  /** True when this connector may write now. */
  isLeader(): boolean {
    const now = this.#now();
    return this.#state === "leader" && now >= this.#writableFrom && now < this.#validUntil;
  }

  /** What a request arriving now should do. */
  decision(): ElectionDecision {
    const now = this.#now();
    switch (this.#state) {
      case "leader":
        if (now >= this.#writableFrom && now < this.#validUntil) {
          return { kind: "leader", epoch: this.#epoch };
        }
        if (now < this.#writableFrom) {
          return { kind: "starting", waitMs: Math.ceil(this.#writableFrom - now) };
        }
        return { kind: "unconfirmed" };
      case "follower":
        return { kind: "follower" };
      default:
        return { kind: "unknown" };
    }
  }

  /** True when the leadership of `epoch` still holds (asked right before a write is sent). */
  stillLeader(epoch: number): boolean {
    return epoch === this.#epoch && this.isLeader();
  }

  /** Resolves after the next election round has run, or after `timeoutMs`. */
  settled(timeoutMs: number): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        const k = this.#tickWaiters.indexOf(done);
        if (k >= 0) this.#tickWaiters.splice(k, 1);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#tickWaiters.push(done);
      this.#kick();
    });
  }

  // -------------------------------------------------------------------------

  async #run(): Promise<void> {
    while (this.#running) {
      // Callers waiting for "the next round" wait for one that starts after they asked.
      const waiters = this.#tickWaiters;
      this.#tickWaiters = [];
      try {
        await this.#tick();
      } catch (err) {
        // #tick handles its own failures; this is a last resort.
        this.#o.log.error("Leader election round failed", { err: errorMessage(err) });
      }
      for (const w of waiters) w();
      if (!this.#running) break;
      await this.#sleep(this.#nextTickDelay());
    }
  }

  #nextTickDelay(): number {
    if (this.#kicked) return 0;
    const now = this.#now();
    if (this.#state !== "leader" && now < this.#pausedUntil) {
      return Math.max(0, Math.min(this.#tickMs, this.#pausedUntil - now));
    }
    return this.#tickMs;
  }

  async #tick(): Promise<void> {
    this.#kicked = false;
    const now = this.#now();
    if (this.#state === "leader") {
      await this.#confirm();
      if (this.#state === "leader" && this.#now() >= this.#nextPrometheusCheck) {
        this.#nextPrometheusCheck = this.#now() + this.#checkPeriodMs;
        const silentMs = this.#now() - this.#lastHeard;
        if (silentMs > this.#o.prometheusTimeoutMs) await this.#resign(silentMs);
      }
      return;
    }
    if (now - this.#lastHeard > this.#o.prometheusTimeoutMs) {
      // Nothing from our Prometheus: a leader without data would only
      // keep a healthy peer from writing. Wait for it to write.
      this.#lossCounted = false;
      if (this.#state !== "idle") {
        this.#state = "idle";
        this.#o.log.info("Leader election: local Prometheus silent, not competing", {
          lock_id: this.#o.lockId,
        });
      }
      await this.#closeSession();
      return;
    }
    if (now < this.#pausedUntil) return;
    await this.#tryAcquire();
  }

  /** One `pg_try_advisory_lock` on the dedicated session (opened if needed). */
  async #tryAcquire(): Promise<void> {
    let s: Session;
    try {
      s = await this.#openSession();
    } catch (err) {
      this.#undecided(`Cannot open the leader election connection: ${errorMessage(err)}`);
      return;
    }
    try {
      const rows = await this.#timed(
        s.conn!<{ locked: boolean }[]>`SELECT pg_try_advisory_lock(${this.#key}::bigint) AS locked`,
      );
      if (s.closed || this.#session !== s) {
        throw new Error("connection closed");
      }
      const gotAt = this.#now();
      if (rows[0]?.locked) {
        this.#epoch++;
        this.#state = "leader";
        this.#writableFrom = gotAt + this.#graceMs;
        // Confirmed as of the query's start at the latest; renewed each tick.
        this.#validUntil = gotAt + this.#validityMs;
        this.#nextPrometheusCheck = gotAt + this.#checkPeriodMs;
        this.#o.metrics.electionsWon.inc();
        this.#lossCounted = false;
        this.#o.log.info("Leader election won: writing after the grace period", {
          lock_id: this.#o.lockId,
          grace_ms: this.#graceMs,
        });
        return;
      }
      if (this.#state !== "follower") {
        this.#state = "follower";
        if (!this.#lossCounted) this.#o.metrics.electionsLost.inc();
        this.#lossCounted = true;
        this.#o.log.info("Leader election lost: another connector holds the lock", {
          lock_id: this.#o.lockId,
        });
      }
    } catch (err) {
      this.#undecided(`Cannot try the advisory lock: ${errorMessage(err)}`);
      // A try that timed out may still have taken the lock: never reuse the session.
      await this.#closeSession();
    }
  }

  /** Confirms the lock on the holder's session; ends the leadership when it cannot. */
  async #confirm(): Promise<void> {
    const s = this.#session;
    if (!s || s.closed || !s.conn) {
      this.#lose("the leader election connection is gone");
      return;
    }
    const startedAt = this.#now();
    const epoch = this.#epoch;
    try {
      const rows = await this.#timed(s.conn<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
          AND classid = ${this.#classid}::oid AND objid = ${this.#objid}::oid AND objsubid = 1`);
      if (epoch !== this.#epoch || this.#session !== s) return; // lost meanwhile
      if (s.closed) {
        this.#lose("the leader election connection closed");
      } else if ((rows[0]?.n ?? 0) < 1) {
        this.#lose("the advisory lock is no longer held by this session");
      } else {
        this.#validUntil = Math.max(this.#validUntil, startedAt + this.#validityMs);
      }
    } catch (err) {
      if (epoch !== this.#epoch || this.#session !== s) return;
      this.#lose(`cannot confirm the advisory lock: ${errorMessage(err)}`);
    }
  }

  /** Leadership ended unexpectedly: stop writing now, compete again on a new connection. */
  #lose(reason: string): void {
    if (this.#state !== "leader") return;
    this.#endLeadership("unknown");
    this.#pausedUntil = this.#now() + this.#rejoinPauseMs;
    this.#o.log.warn("Leader election: leadership lost, stopped writing", {
      lock_id: this.#o.lockId,
      reason,
    });
    // The session may be alive and still hold the lock (a timed-out check):
    // closing it is what frees the lock for the peers.
    const s = this.#session;
    this.#session = null;
    if (s) void this.#endSession(s);
  }

  /** The local Prometheus went silent: give the lock to a peer. */
  async #resign(silentMs: number): Promise<void> {
    this.#endLeadership("idle");
    this.#o.log.warn("Leader election: local Prometheus silent, releasing the advisory lock", {
      lock_id: this.#o.lockId,
      silent_ms: Math.round(silentMs),
      timeout_ms: this.#o.prometheusTimeoutMs,
    });
    await this.#unlock();
    await this.#closeSession();
  }

  #endLeadership(next: State, count = true): void {
    this.#epoch++;
    this.#state = next;
    this.#writableFrom = Infinity;
    this.#validUntil = -Infinity;
    this.#nextPrometheusCheck = Infinity;
    if (count) this.#o.metrics.electionsLost.inc();
    this.#lossCounted = count;
  }

  #undecided(reason: string): void {
    if (this.#state !== "unknown") {
      this.#o.log.warn("Leader election undecided", { lock_id: this.#o.lockId, reason });
    }
    this.#state = "unknown";
  }

  async #unlock(): Promise<void> {
    const s = this.#session;
    if (!s?.conn || s.closed) return;
    try {
      await this.#timed(s.conn`SELECT pg_advisory_unlock(${this.#key}::bigint)`);
    } catch (err) {
      // Closing the session frees the lock anyway.
      this.#o.log.warn("Cannot release the advisory lock; closing its connection", {
        lock_id: this.#o.lockId,
        err: errorMessage(err),
      });
    }
  }

  async #openSession(): Promise<Session> {
    if (this.#session && !this.#session.closed) return this.#session;
    if (this.#session) await this.#closeSession();
    const s: Session = { pool: null as unknown as Sql, conn: null, closed: false };
    s.pool = this.#o.openPool(() => this.#onClose(s));
    this.#session = s;
    try {
      s.conn = await this.#timed(s.pool.reserve());
      if (s.closed) throw new Error("connection closed");
      return s;
    } catch (err) {
      if (this.#session === s) this.#session = null;
      await this.#endSession(s);
      throw err;
    }
  }

  #onClose(s: Session): void {
    s.closed = true;
    if (this.#session !== s) return; // closed on purpose
    if (this.#state === "leader") this.#lose("the leader election connection closed");
    else this.#session = null;
    this.#kick();
  }

  async #closeSession(): Promise<void> {
    const s = this.#session;
    this.#session = null;
    if (s) await this.#endSession(s);
  }

  async #endSession(s: Session): Promise<void> {
    try {
      s.conn?.release();
    } catch {
      // Already gone.
    }
    await s.pool.end({ timeout: 0 }).catch(() => {});
  }

  /** Bounds a query on the election session by the validity: a hung session is a lost one. */
  #timed<T>(p: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${this.#validityMs} ms`)),
        this.#validityMs,
      );
    });
    // A query abandoned after the timeout must not surface as an unhandled rejection.
    p.catch(() => {});
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  #kick(): void {
    this.#kicked = true;
    this.#wake?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
    });
  }

  #wakeTickWaiters(): void {
    const ws = this.#tickWaiters;
    this.#tickWaiters = [];
    for (const w of ws) w();
  }
}
