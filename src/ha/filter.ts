/**
 * The HA filter: splits a decoded request by the `cluster` / `__replica__`
 * external labels and routes every sample by its cluster's lease
 * (lease.ts): the leader's samples inside its lease are stored at once,
 * fenced by that lease; all others are staged for the reconciler
 * (reconciler.ts), which keeps per series exactly the rounds the stored
 * data lacks. The replica label is removed before storage. No sample is
 * dropped here and no follower is made to wait or retry.
 */
import { mapDbError } from "../db_errors.ts";
import { BadRequestError } from "../errors.ts";
import type { DecodedWrite, Fence, FilterResult, IngestFilter, WriteSeries } from "../ingest.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";
import type { HaClusters } from "./clusters.ts";
import { overdue, Route, route, typicalTime } from "./lease.ts";
import type { RecentLeaderSamples } from "./recent.ts";

/** Settings of the HA filter. */
export interface HaFilterOptions {
  clusters: HaClusters;
  clusterLabel: string;
  replicaLabel: string;
  metrics: ConnectorMetrics;
  /** Recognises followers' copies of leader samples this connector wrote (recent.ts). */
  recent?: RecentLeaderSamples;
  /** The id of a series if cached (the writer's series cache), for `recent`. */
  seriesId?: (labels: WriteSeries["labels"]) => number | undefined;
}

interface Group {
  cluster: string;
  /** Per series of the request in this cluster: its index and replica. */
  members: { index: number; replica: string }[];
}

/** Lease-based HA de-duplication (docs/architecture.md, "High availability"; docs/ha.md). */
export class HaFilter implements IngestFilter {
  readonly #o: HaFilterOptions;

  constructor(o: HaFilterOptions) {
    this.#o = o;
  }

  async apply(decoded: DecodedWrite): Promise<FilterResult> {
    const { groups, passthrough } = this.#group(decoded);
    if (groups.size === 0) return { series: decoded.series };
    const series: WriteSeries[] = passthrough.map((i) => decoded.series[i]);
    const staged: WriteSeries[] = [];
    const fences: Fence[] = [];
    const commits: (() => void)[] = [];
    for (const g of groups.values()) {
      try {
        await this.#route(g, decoded, series, staged, fences, commits);
      } catch (err) {
        if (err instanceof BadRequestError) throw err;
        throw mapDbError(
          err,
          "Cannot keep an HA lease for this cluster or replica",
          "HA lease unavailable",
        );
      }
    }
    return {
      series,
      staged,
      fences,
      committed: commits.length ? () => commits.forEach((c) => c()) : undefined,
    };
  }

  /** Routes the samples of one cluster's series into `direct` and `staged`. */
  async #route(
    g: Group,
    decoded: DecodedWrite,
    direct: WriteSeries[],
    staged: WriteSeries[],
    fences: Fence[],
    commits: (() => void)[],
  ): Promise<void> {
    const clusters = this.#o.clusters;
    const s = clusters.get(g.cluster);
    const first = g.members[0];
    let v = await clusters.ensure(s, first.replica, minTime(decoded, g, first.replica));
    if (g.members.some((m) => m.replica === v.leader)) clusters.heard(s);
    // A replica other than the leader sends while the leader may be silent.
    const other = g.members.find((m) => m.replica !== v.leader);
    if (other && overdue(v, clusters.now())) {
      v = await clusters.checkLeader(s, other.replica, typical(decoded, g, other.replica)) ?? v;
      if (v.leader === other.replica) clusters.heard(s);
    }
    const { replicaLabel, seriesId } = this.#o;
    const recent = seriesId ? this.#o.recent : undefined;
    let accepted = 0, stagedCount = 0, copies = 0;
    const newest: number[] = [];
    const noted: WriteSeries[] = [];
    for (const m of g.members) {
      const src = decoded.series[m.index];
      const ts = src.timestamps;
      if (ts.length === 0) {
        // Exemplars alone: the leader's are kept (a follower's are copies).
        if (src.exemplars && m.replica === v.leader) {
          direct.push({ ...src, labels: src.labels.filter((l) => l.name !== replicaLabel) });
        }
        continue;
      }
      const labels = src.labels.filter((l) => l.name !== replicaLabel);
      // Not cached: not written lately through this connector, no copy known.
      const key = recent && seriesId!(labels);
      const keep: number[] = [];
      const stage: number[] = [];
      let top = -Infinity;
      for (let i = 0; i < ts.length; i++) {
        if (route(v, m.replica, ts[i]) === Route.Direct) {
          keep.push(i);
          if (ts[i] > top) top = ts[i];
        } else if (key !== undefined && recent?.isCopy(key, ts[i])) copies++;
        else stage.push(i);
      }
      if (keep.length) {
        const d = keep.length === ts.length ? { ...src, labels } : pick(labels, src, keep);
        direct.push(d);
        newest.push(top);
        if (recent) noted.push(d);
      }
      if (stage.length) {
        staged.push(stage.length === ts.length ? { ...src, labels } : pick(labels, src, stage));
      }
      stagedCount += stage.length;
      accepted += keep.length;
    }
    if (copies) {
      this.#o.metrics.samplesDropped.inc({ cluster: g.cluster, reason: "duplicate" }, copies);
    }
    const m = this.#o.metrics;
    if (accepted) m.samplesAccepted.inc({ cluster: g.cluster }, accepted);
    if (stagedCount) m.samplesStaged.inc({ cluster: g.cluster }, stagedCount);
    if (newest.length === 0) return;
    const { leader, start } = v;
    const top = typicalTime(newest);
    fences.push({ cluster: g.cluster, leader, start, lost: () => clusters.invalidate(s) });
    commits.push(() => {
      clusters.written(s, leader, start, top);
      // After the commit the writer has cached the ids.
      for (const d of noted) {
        const id = seriesId!(d.labels);
        if (id !== undefined) recent!.note(id, d.timestamps);
      }
    });
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
}

/** The oldest sample of `replica` in the group (where a new cluster's first lease starts). */
function minTime(decoded: DecodedWrite, g: Group, replica: string): number {
  let min = Infinity;
  for (const m of g.members) {
    if (m.replica !== replica) continue;
    const ts = decoded.series[m.index].timestamps;
    for (let i = 0; i < ts.length; i++) if (ts[i] < min) min = ts[i];
  }
  // A request of series without samples: the lease starts at the epoch and
  // the replica's first samples, whenever stamped, are its.
  return min === Infinity ? 0 : min;
}

/** The typical newest sample of `replica` in the group (lease.ts `typicalTime`). */
function typical(decoded: DecodedWrite, g: Group, replica: string): number {
  const newest: number[] = [];
  for (const m of g.members) {
    if (m.replica !== replica) continue;
    const ts = decoded.series[m.index].timestamps;
    let top = -Infinity;
    for (let i = 0; i < ts.length; i++) if (ts[i] > top) top = ts[i];
    if (top > -Infinity) newest.push(top);
  }
  return typicalTime(newest);
}

function pick(labels: WriteSeries["labels"], src: WriteSeries, idx: number[]): WriteSeries {
  const t = new Float64Array(idx.length);
  const vals = new Float64Array(idx.length);
  for (let k = 0; k < idx.length; k++) {
    t[k] = src.timestamps[idx[k]];
    vals[k] = src.values[idx[k]];
  }
  // Histogram samples keep their bodies; exemplars and created timestamps
  // go along (the writer stores exemplars of directly stored series only).
  const out: WriteSeries = { labels, timestamps: t, values: vals };
  if (src.histograms) out.histograms = idx.map((k) => src.histograms![k]);
  if (src.exemplars) {
    out.exemplars = src.exemplars;
    out.exemplarValues = src.exemplarValues;
  }
  if (src.created) out.created = src.created;
  return out;
}
