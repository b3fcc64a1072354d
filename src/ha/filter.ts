/**
 * The HA filter: splits a decoded request by the `cluster` / `__replica__`
 * external labels, judges every sample against its cluster's lease
 * (lease.ts), talks to the database (lease_store.ts) only when the rules
 * say the local copy is not enough, and returns what to store, without the
 * replica label. See lease.ts for why followers ahead of the leader get a
 * 503 rather than being buffered here.
 */
import { mapDbError } from "../storage/db.ts";
import { BadRequestError, UnavailableError } from "../errors.ts";
import type { DecodedWrite } from "../remote_write/decode.ts";
import type { FilterResult, IngestFilter } from "../remote_write/handler.ts";
import type { WriteSeries } from "../storage/writer.ts";
import type { Logger } from "../telemetry/log.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";
import {
  judge,
  type LeaseRow,
  type LeaseTimings,
  type LeaseView,
  overdue,
  Verdict,
  viewFromRow,
} from "./lease.ts";
import type { LeaseStore } from "./lease_store.ts";

/** Settings of the HA filter. */
export interface HaFilterOptions {
  store: LeaseStore;
  timings: LeaseTimings;
  clusterLabel: string;
  replicaLabel: string;
  metrics: ConnectorMetrics;
  log: Logger;
  /** Local monotonic clock in ms (injected for tests). */
  now?: () => number;
  /** Wall clock in ms since the epoch, for the "too far in the future" limit (injected for tests). */
  wallNow?: () => number;
  /** Clusters kept in memory at most (least recently used evicted). */
  maxClusters?: number;
  /** How long a follower's request ahead of the leader waits for it before a 503. */
  holdMs?: number;
}

/** Past intervals kept per cluster. */
const PAST_KEPT = 32;
/** Follower requests held back (waiting for the leader) at once, at most. */
const MAX_HELD = 16;
/** Minimum spacing of read-only lease refreshes / takeover attempts per cluster. */
const ASK_SPACING_MS = 200;

/** Per-cluster state of this connector. */
class ClusterState {
  view: LeaseView | null = null;
  /** Newest leader sample written through this connector (for the current lease). */
  written = -Infinity;
  /** Local instant the leader was last heard through this connector. */
  heardAt = -Infinity;
  /** What was last reported to the database. */
  reportedWritten = -Infinity;
  reportedHeardAt = -Infinity;
  lastAsked = -Infinity;
  lastTakeover = -Infinity;
  waiters = new Set<() => void>();
  constructor(readonly cluster: string) {}

  notify(): void {
    for (const w of this.waiters) w();
    this.waiters.clear();
  }
}

interface Group {
  cluster: string;
  /** Per series of the request in this cluster: its index and replica. */
  members: { index: number; replica: string }[];
}

/** Lease-based HA de-duplication (DESIGN.md, "High availability: lease-based"). */
export class HaFilter implements IngestFilter {
  readonly #o: HaFilterOptions;
  readonly #now: () => number;
  readonly #wallNow: () => number;
  readonly #states = new Map<string, ClusterState>();
  readonly #maxClusters: number;
  readonly #holdMs: number;
  #timer: ReturnType<typeof setInterval> | null = null;
  #held = 0;
  #reporting: Promise<void> | null = null;

  constructor(o: HaFilterOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => performance.now());
    this.#wallNow = o.wallNow ?? Date.now;
    this.#maxClusters = o.maxClusters ?? 10_000;
    // Short: a held request keeps an in-flight slot that the leader's
    // writes may need, and a follower inside the handover window is
    // usually still inside it a moment later (it then gets a 503, backs
    // off and falls back behind the window, where it is simply dropped).
    this.#holdMs = o.holdMs ?? Math.min(500, Math.floor(o.timings.failoverTimeoutMs / 10));
  }

  /** Clusters held in memory (bounded by maxClusters). */
  get clusterCount(): number {
    return this.#states.size;
  }

  /** Starts the background reporter (leader progress, once per lease-refresh per cluster). */
  start(): void {
    this.#timer ??= setInterval(() => {
      this.#reporting ??= this.report().finally(() => this.#reporting = null);
    }, this.#o.timings.leaseRefreshMs);
  }

  /** Stops the reporter after a last report, so the leader's progress is not lost. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#reporting;
    await this.report().catch(() => {});
    for (const s of this.#states.values()) s.notify();
  }

  /**
   * Reports every cluster whose leader was heard through this connector
   * since the last report: extends the lease and tells the database the
   * leader is alive. Called on a timer; exposed for tests.
   */
  async report(): Promise<void> {
    for (const s of [...this.#states.values()]) {
      const v = s.view;
      if (!v || (s.written <= s.reportedWritten && s.heardAt <= s.reportedHeardAt)) continue;
      const written = s.written;
      const heardAt = s.heardAt;
      const askedAt = this.#now();
      try {
        const row = await this.#o.store.updateLease(
          s.cluster,
          v.leader,
          Math.max(v.start, written),
          Math.max(v.maxTime, written),
          askedAt - heardAt,
        );
        s.reportedWritten = written;
        s.reportedHeardAt = heardAt;
        await this.#adopt(s, row, askedAt);
      } catch (err) {
        this.#o.log.warn("Cannot report HA lease progress", {
          cluster: s.cluster,
          err: (err as Error).message,
        });
      }
    }
  }

  async apply(decoded: DecodedWrite): Promise<FilterResult> {
    const { groups, passthrough } = this.#group(decoded);
    if (groups.size === 0) return { series: decoded.series };
    const out: WriteSeries[] = passthrough.map((i) => decoded.series[i]);
    const commits: (() => void)[] = [];
    const guards: (() => void)[] = [];
    for (const g of groups.values()) {
      const s = await this.#ensureState(g, decoded);
      const kept = await this.#decide(s, g, decoded);
      out.push(...kept.series);
      if (kept.leaderMax > -Infinity) {
        const leader = kept.leader;
        const start = kept.start;
        const max = kept.leaderMax;
        guards.push(() => this.#guard(s, leader, start));
        commits.push(() => {
          if (s.view?.leader === leader && s.view.start === start) {
            s.written = Math.max(s.written, max);
            s.heardAt = this.#now();
            if (max > s.view.maxTime) s.view.maxTime = max;
            s.notify();
          }
        });
      }
    }
    return {
      series: out,
      guard: guards.length ? () => guards.forEach((g) => g()) : undefined,
      committed: commits.length ? () => commits.forEach((c) => c()) : undefined,
    };
  }

  /** Groups series by cluster; 400 when a series has only one of the two labels. */
  #group(decoded: DecodedWrite): { groups: Map<string, Group>; passthrough: number[] } {
    const { clusterLabel, replicaLabel } = this.#o;
    const groups = new Map<string, Group>();
    const passthrough: number[] = [];
    decoded.series.forEach((s, index) => {
      let cluster: string | undefined;
      let replica: string | undefined;
      for (const l of s.labels) {
        if (l.name === clusterLabel) cluster = l.value;
        else if (l.name === replicaLabel) replica = l.value;
      }
      if (cluster === undefined && replica === undefined) {
        passthrough.push(index);
        return;
      }
      if (cluster === undefined || replica === undefined) {
        const missing = cluster === undefined ? clusterLabel : replicaLabel;
        const present = cluster === undefined ? replicaLabel : clusterLabel;
        throw new BadRequestError(
          `Series ${index} has HA label "${present}" but no "${missing}" label: ` +
            `both must be set (Prometheus external_labels) or neither`,
        );
      }
      let g = groups.get(cluster);
      if (!g) groups.set(cluster, g = { cluster, members: [] });
      g.members.push({ index, replica });
    });
    return { groups, passthrough };
  }

  /** Returns the cluster's state with a view, creating the lease when the cluster is new. */
  async #ensureState(g: Group, decoded: DecodedWrite): Promise<ClusterState> {
    let s = this.#states.get(g.cluster);
    if (s) {
      // Least recently used order: move to the end.
      this.#states.delete(g.cluster);
      this.#states.set(g.cluster, s);
    } else {
      s = new ClusterState(g.cluster);
      this.#states.set(g.cluster, s);
      this.#evict();
    }
    if (s.view) return s;
    const askedAt = this.#now();
    let row = await this.#db(() => this.#o.store.getLease(g.cluster));
    if (!row) {
      // First replica heard from wins: offer the first series' replica.
      const first = g.members[0];
      const latest = this.#latest();
      let min = Infinity, max = -Infinity;
      for (const m of g.members) {
        if (m.replica !== first.replica) continue;
        const t = decoded.series[m.index].timestamps;
        for (let i = 0; i < t.length; i++) {
          if (t[i] > latest) continue;
          if (t[i] < min) min = t[i];
          if (t[i] > max) max = t[i];
        }
      }
      if (min === Infinity) min = max = Math.min(latest, this.#wallNow());
      row = await this.#db(() => this.#o.store.updateLease(g.cluster, first.replica, min, max, 0));
    }
    await this.#adopt(s, row, askedAt);
    return s;
  }

  /** Takes a row from the database as the cluster's view. */
  async #adopt(s: ClusterState, row: LeaseRow, askedAt: number): Promise<void> {
    const old = s.view;
    const sameLease = old !== null && old.leader === row.leader && old.start === row.start;
    let past = sameLease ? old.past : undefined;
    if (!past) {
      past = await this.#db(() => this.#o.store.pastLeases(s.cluster, row.start, PAST_KEPT));
    }
    if (!sameLease) {
      s.written = -Infinity;
      s.heardAt = -Infinity;
      s.reportedWritten = -Infinity;
      s.reportedHeardAt = -Infinity;
    }
    // Keep the fresher trust when an older answer arrives after a newer one.
    const next = viewFromRow(row, askedAt, this.#o.timings, past, s.written);
    if (sameLease && old.validUntil > next.validUntil) {
      next.validUntil = old.validUntil;
      next.overdueAt = Math.max(old.overdueAt, next.overdueAt);
    }
    if (sameLease) next.maxTime = Math.max(next.maxTime, old.maxTime);
    s.view = next;
    const m = this.#o.metrics;
    if (!old || old.leader !== row.leader) {
      if (old) {
        m.haLeader.delete({ cluster: s.cluster, replica: old.leader });
        m.haLeaderChanges.inc({ cluster: s.cluster });
        this.#o.log.info("HA leader changed", {
          cluster: s.cluster,
          from: old.leader,
          to: row.leader,
          lease_start: new Date(row.start).toISOString(),
        });
      }
      m.haLeader.set({ cluster: s.cluster, replica: row.leader }, 1);
    }
    s.notify();
  }

  /**
   * Judges the group's samples, asking the database, waiting for the leader
   * or taking over as the rules require; returns what to store.
   */
  async #decide(
    s: ClusterState,
    g: Group,
    decoded: DecodedWrite,
  ): Promise<{ series: WriteSeries[]; leaderMax: number; leader: string; start: number }> {
    const deadline = this.#now() + this.#holdMs;
    const latest = this.#latest();
    let total = 0;
    for (const m of g.members) total += decoded.series[m.index].timestamps.length;
    // Each sample's verdict, in member order: #collect uses them as they are.
    const verdicts = new Uint8Array(total);
    for (let round = 0;; round++) {
      const v = s.view!;
      const now = this.#now();
      let renewMax = -Infinity, renewMin = Infinity;
      let aheadMax = -Infinity, aheadReplica = "";
      let ahead = false;
      let k = 0;
      for (const m of g.members) {
        const ts = decoded.series[m.index].timestamps;
        for (let i = 0; i < ts.length; i++) {
          const verdict = judge(v, m.replica, ts[i], now, latest);
          verdicts[k++] = verdict;
          if (verdict === Verdict.Renew) {
            if (ts[i] > renewMax) renewMax = ts[i];
            if (ts[i] < renewMin) renewMin = ts[i];
          } else if (verdict === Verdict.Ahead) {
            ahead = true;
            if (ts[i] > aheadMax) {
              aheadMax = ts[i];
              aheadReplica = m.replica;
            }
          }
        }
      }
      if (renewMax > -Infinity) {
        const askedAt = this.#now();
        const row = await this.#db(() =>
          this.#o.store.updateLease(g.cluster, v.leader, renewMin, renewMax, 0)
        );
        await this.#adopt(s, row, askedAt);
        if (round < 4) continue;
        throw new UnavailableError(`Cannot confirm the HA lease of cluster "${g.cluster}"`);
      }
      if (!ahead) return this.#collect(s, g, decoded, verdicts);
      if (overdue(v, now) && now - s.lastTakeover >= ASK_SPACING_MS) {
        s.lastTakeover = now;
        const askedAt = this.#now();
        const row = await this.#db(() =>
          this.#o.store.tryChangeLeader(g.cluster, aheadReplica, aheadMax)
        );
        await this.#adopt(s, row, askedAt);
        continue;
      }
      const remaining = deadline - now;
      // At most MAX_HELD requests wait at once: a follower Prometheus that
      // scales out its shards must not fill the in-flight slots the
      // leader's writes need; beyond that the 503 comes at once.
      if (remaining > 0 && round < 50 && this.#held < MAX_HELD) {
        this.#held++;
        try {
          await this.#waitForProgress(s, Math.min(remaining, Math.max(1, v.overdueAt - now)));
        } finally {
          this.#held--;
        }
        continue;
      }
      if (now - s.lastAsked >= ASK_SPACING_MS && round < 52) {
        // The leader's progress through other connectors reaches this one
        // through the database: look once before refusing.
        s.lastAsked = now;
        const askedAt = this.#now();
        const row = await this.#db(() => this.#o.store.getLease(g.cluster));
        if (row) await this.#adopt(s, row, askedAt);
        continue;
      }
      throw new UnavailableError(
        `HA cluster "${g.cluster}": leader "${v.leader}" has not yet sent samples up to ` +
          `${new Date(aheadMax).toISOString()} from replica "${aheadReplica}"; ` +
          `retry (they are stored if the leader fails over)`,
      );
    }
  }

  /** Builds the series to store for a group from its samples' verdicts (none Renew or Ahead). */
  #collect(
    s: ClusterState,
    g: Group,
    decoded: DecodedWrite,
    verdicts: Uint8Array,
  ): { series: WriteSeries[]; leaderMax: number; leader: string; start: number } {
    const v = s.view!;
    const m = this.#o.metrics;
    const { replicaLabel } = this.#o;
    const series: WriteSeries[] = [];
    let leaderMax = -Infinity;
    let accepted = 0, notLeader = 0, tooOld = 0, tooNew = 0;
    let j = 0;
    for (const mem of g.members) {
      const src = decoded.series[mem.index];
      const ts = src.timestamps;
      const keep: number[] = [];
      for (let i = 0; i < ts.length; i++) {
        const verdict = verdicts[j++];
        if (verdict === Verdict.Keep) {
          keep.push(i);
          if (mem.replica === v.leader && ts[i] >= v.start && ts[i] > leaderMax) {
            leaderMax = ts[i];
          }
        } else if (verdict === Verdict.TooOld) tooOld++;
        else if (verdict === Verdict.TooNew) tooNew++;
        else notLeader++;
      }
      if (keep.length === 0) continue;
      accepted += keep.length;
      const labels = src.labels.filter((l) => l.name !== replicaLabel);
      if (keep.length === ts.length) {
        series.push({ labels, timestamps: ts, values: src.values });
        continue;
      }
      const t = new Float64Array(keep.length);
      const vals = new Float64Array(keep.length);
      for (let k = 0; k < keep.length; k++) {
        t[k] = ts[keep[k]];
        vals[k] = src.values[keep[k]];
      }
      series.push({ labels, timestamps: t, values: vals });
    }
    if (accepted) m.samplesAccepted.inc({ cluster: g.cluster }, accepted);
    if (notLeader) m.samplesDropped.inc({ cluster: g.cluster, reason: "not_leader" }, notLeader);
    if (tooOld) m.samplesDropped.inc({ cluster: g.cluster, reason: "too_old" }, tooOld);
    if (tooNew) m.samplesDropped.inc({ cluster: g.cluster, reason: "too_new" }, tooNew);
    return { series, leaderMax, leader: v.leader, start: v.start };
  }

  /** The newest sample time accepted: a lease timeout past the wall clock. */
  #latest(): number {
    return this.#wallNow() + this.#o.timings.leaseTimeoutMs;
  }

  /** Refuses a write whose trust in the leader's lease lapsed while it waited for a connection. */
  #guard(s: ClusterState, leader: string, start: number): void {
    const v = s.view;
    if (!v || v.leader !== leader || v.start !== start || this.#now() >= v.validUntil) {
      throw new UnavailableError(
        `HA lease of cluster "${s.cluster}" could not be confirmed before writing; retry`,
      );
    }
  }

  #waitForProgress(s: ClusterState, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        s.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      s.waiters.add(done);
    });
  }

  #evict(): void {
    if (this.#states.size <= this.#maxClusters) return;
    for (const [cluster, s] of this.#states) {
      if (this.#states.size <= this.#maxClusters) break;
      if (s.waiters.size || s.written > s.reportedWritten) continue;
      this.#states.delete(cluster);
      if (s.view) this.#o.metrics.haLeader.delete({ cluster, replica: s.view.leader });
    }
  }

  /**
   * Runs a lease query. A database failure is a 503 (Promscale answered 400
   * here and lost data), except a request the schema can never hold (a
   * cluster or replica name too long for the lease index: SQLSTATE class
   * 54, or bad data, class 22), which is a 400 so it does not block
   * Prometheus's queue forever.
   */
  async #db<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapDbError(
        err,
        "Cannot keep an HA lease for this cluster or replica",
        "HA lease unavailable",
      );
    }
  }
}
