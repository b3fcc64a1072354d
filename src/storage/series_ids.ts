/**
 * Series ids for the series of one write: from the bounded in-memory cache,
 * and for all the misses of a request together one call of
 * `_prom_catalog.get_or_create_series` (which creates what is new, and the
 * metric's view with it).
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import { UnavailableError } from "../errors.ts";
import type { WriteSeries } from "../ingest.ts";
import type { SeriesCache } from "./series_cache.ts";

/** The canonical cache key of a sorted label set. NUL cannot occur in labels (decode refuses it). */
export function seriesKey(labels: { name: string; value: string }[]): string {
  let key = "";
  for (let i = 0; i < labels.length; i++) {
    key += labels[i].name + "\u0000" + labels[i].value + "\u0000";
  }
  return key;
}

/** The jsonb text of a label set, as stored in `_prom_catalog.series.labels`. */
export function labelsJson(labels: { name: string; value: string }[]): string {
  let out = "{";
  for (let i = 0; i < labels.length; i++) {
    if (i) out += ",";
    out += JSON.stringify(labels[i].name) + ":" + JSON.stringify(labels[i].value);
  }
  return out + "}";
}

/** Ids of `series`, index for index, and how many of them were created. */
export async function resolveSeriesIds(
  sql: Sql,
  cache: SeriesCache,
  series: WriteSeries[],
): Promise<{ ids: number[]; created: number }> {
  const ids = new Array<number>(series.length);
  let missJson: string[] | undefined;
  let missIdx: number[][] | undefined;
  let missPos: Map<string, number> | undefined;
  for (let i = 0; i < series.length; i++) {
    const id = cache.get(series[i].labels);
    if (id !== undefined) {
      ids[i] = id;
      continue;
    }
    // A miss: the canonical key only dedupes the misses of this request.
    const key = seriesKey(series[i].labels);
    missJson ??= [];
    missIdx ??= [];
    missPos ??= new Map();
    const at = missPos.get(key);
    if (at !== undefined) {
      missIdx[at].push(i);
      continue;
    }
    missPos.set(key, missJson.length);
    missJson.push(labelsJson(series[i].labels));
    missIdx.push([i]);
  }
  if (!missJson) return { ids, created: 0 };
  const rows = await sql<{ idx: number; series_id: string; created: boolean }[]>`
    SELECT idx, series_id, created
    FROM _prom_catalog.get_or_create_series(${missJson}::text[]::jsonb[])`;
  if (rows.length !== missJson.length) {
    throw new UnavailableError(
      `Cannot resolve series: ${missJson.length} asked, ${rows.length} returned`,
    );
  }
  let created = 0;
  for (const r of rows) {
    const at = r.idx - 1;
    const id = Number(r.series_id);
    if (r.created) created++;
    cache.set(series[missIdx![at][0]].labels, id);
    for (const i of missIdx![at]) ids[i] = id;
  }
  return { ids, created };
}
