/**
 * The partitions of `_prom_data.samples` known to exist, so that a write
 * asks the database (`_prom_catalog.ensure_partitions`) only when a day
 * appears that no known partition covers. Retention may drop partitions
 * behind the writer's back; it then forgets and asks again.
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import type { WriteSeries } from "../ingest.ts";

const DAY_MS = 86_400_000;

/** Known partition ranges, and making sure of the missing ones. */
export class PartitionCache {
  /** Sorted, disjoint partition ranges known to exist: [start, end) in ms. */
  #ranges: [number, number][] = [];

  constructor(readonly sql: Sql) {}

  /** Forgets every known range (after retention dropped some). */
  forget(): void {
    this.#ranges = [];
  }

  /** Makes sure partitions exist for every sample time of `series` (one call for the days not known). */
  async ensure(series: WriteSeries[]): Promise<void> {
    let missing: Set<number> | undefined;
    let lastDay = NaN;
    for (const s of series) {
      const ts = s.timestamps;
      for (let i = 0; i < ts.length; i++) {
        const day = Math.floor(ts[i] / DAY_MS) * DAY_MS;
        if (day === lastDay) continue;
        lastDay = day;
        if (this.#covered(ts[i])) continue;
        (missing ??= new Set()).add(day);
      }
    }
    if (!missing) return;
    const times = [...missing].map((d) => new Date(d).toISOString());
    const rows = await this.sql<{ range_start: Date; range_end: Date }[]>`
      SELECT range_start, range_end FROM _prom_catalog.ensure_partitions(${times}::timestamptz[])`;
    for (const r of rows) {
      this.#addRange(toMs(r.range_start, -Infinity), toMs(r.range_end, Infinity));
    }
  }

  #covered(t: number): boolean {
    const p = this.#ranges;
    let lo = 0, hi = p.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (t < p[mid][0]) hi = mid - 1;
      else if (t >= p[mid][1]) lo = mid + 1;
      else return true;
    }
    return false;
  }

  #addRange(start: number, end: number): void {
    if (this.#ranges.some(([s, e]) => s === start && e === end)) return;
    this.#ranges.push([start, end]);
    this.#ranges.sort((a, b) => a[0] - b[0]);
  }
}

function toMs(d: Date, ifInfinite: number): number {
  const t = d instanceof Date ? d.getTime() : NaN;
  return Number.isFinite(t) ? t : ifInfinite;
}
