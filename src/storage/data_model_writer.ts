/**
 * Stores what a write request carries besides float samples (see
 * `migrations/data_model.ts`): histogram bodies, exemplars, created
 * timestamps and metric metadata, in one transaction, BEFORE the samples
 * (and the histograms' presence rows) are written: a body without its
 * presence row is invisible, so a failure between the two loses nothing and
 * a retried request finds the bodies already there (`ON CONFLICT DO
 * NOTHING`). Doubles go through binary COPY, bit for bit.
 *
 * Exemplars are stored for the series the filter keeps (`direct`), not for
 * those staged for HA reconciliation: a follower's exemplars are copies of
 * the leader's.
 *
 * @module
 */
import type { Sql, TransactionSql } from "../../deps.ts";
import type { DecodedMetadata, SeriesExtras, WriteSeries } from "../ingest.ts";
import { CopyRows } from "./copy_rows.ts";
import { copyIn } from "./pg_patches.ts";
import { labelsJson } from "./series_ids.ts";

/** A series as the writer gets it, with what may come besides samples. */
export type ModelSeries = WriteSeries & SeriesExtras;

/** Counts of what {@linkcode DataModelWriter.write} stored (or found stored). */
export interface DataModelCounts {
  histograms: number;
  exemplars: number;
  metadata: number;
}

/** Most metric names / series whose last metadata / created timestamp is remembered. */
const MAX_REMEMBERED = 100_000;

/** Writes histogram bodies, exemplars, created timestamps and metadata. */
export class DataModelWriter {
  /** Histogram metrics whose prom_histogram view is known to exist (for this process). */
  #viewed = new Set<string>();
  /** Metadata last written per metric, to skip unchanged repeats (sent every minute). */
  #metadata = new Map<string, string>();
  /** Last created timestamp written per series id. */
  #created = new Map<number, number>();

  /** Whether `series` or `metadata` hold anything this writer stores. */
  static has(series: ModelSeries[], metadata?: DecodedMetadata[]): boolean {
    if (metadata?.length) return true;
    for (const s of series) {
      if (s.histograms?.length || s.exemplars?.length || s.created?.length) return true;
    }
    return false;
  }

  /**
   * Stores the extras of `series` (series ids in `ids`, index for index;
   * exemplars only of the first `direct`) and `metadata`. `newSeries`: the
   * request created series (a histogram metric may have new label columns).
   */
  async write(
    sql: Sql,
    series: ModelSeries[],
    ids: number[],
    direct: number,
    metadata: DecodedMetadata[] = [],
    newSeries = false,
  ): Promise<DataModelCounts> {
    const bodies = new CopyRows();
    const exemplars = new CopyRows();
    const createdIds: number[] = [];
    const createdTimes: string[] = [];
    const histogramMetrics = new Set<string>();
    for (let s = 0; s < series.length; s++) {
      const x = series[s];
      const id = ids[s];
      if (x.histograms?.length) {
        encodeBodies(bodies, id, x);
        const name = x.labels.find((l) => l.name === "__name__")?.value;
        if (name !== undefined && (newSeries || !this.#viewed.has(name))) {
          histogramMetrics.add(name);
        }
      }
      if (s < direct && x.exemplars?.length) {
        const values = x.exemplarValues!;
        for (let i = 0; i < x.exemplars.length; i++) {
          const e = x.exemplars[i];
          exemplars.row(4).int8(id).time(e.timestamp).float8(values, i).jsonb(labelsJson(e.labels));
        }
      }
      if (x.created?.length) {
        for (const t of x.created) {
          if (this.#created.get(id) === t) continue;
          createdIds.push(id);
          createdTimes.push(new Date(t).toISOString());
        }
      }
    }
    const meta = metadata.filter((m) =>
      this.#metadata.get(m.metric) !== `${m.type}\u0000${m.help}\u0000${m.unit}`
    );
    if (!bodies.rows && !exemplars.rows && !createdIds.length && !meta.length) {
      return { histograms: 0, exemplars: 0, metadata: 0 };
    }
    await sql.begin(async (tx) => {
      if (bodies.rows) await insertBodies(tx, bodies.finish());
      if (exemplars.rows) await insertExemplars(tx, exemplars.finish());
      if (createdIds.length) {
        await tx`INSERT INTO _prom_data.created_timestamps (series_id, created)
                 SELECT * FROM unnest(${createdIds}::int8[], ${createdTimes}::timestamptz[])
                 ON CONFLICT DO NOTHING`;
      }
      if (meta.length) {
        await tx`INSERT INTO _prom_catalog.metric_metadata AS m (metric_name, type, help, unit)
                 SELECT * FROM unnest(${meta.map((m) => m.metric)}::text[],
                   ${meta.map((m) => m.type)}::text[], ${meta.map((m) => m.help)}::text[],
                   ${meta.map((m) => m.unit)}::text[])
                 ON CONFLICT (metric_name) DO UPDATE
                   SET type = EXCLUDED.type, help = EXCLUDED.help, unit = EXCLUDED.unit,
                       updated_at = now()
                   WHERE (m.type, m.help, m.unit) IS DISTINCT FROM
                         (EXCLUDED.type, EXCLUDED.help, EXCLUDED.unit)`;
      }
      if (histogramMetrics.size) {
        await tx`SELECT _prom_catalog.register_histogram_views(${[...histogramMetrics]}::text[])`;
      }
    });
    // Remembered only once committed.
    for (const m of histogramMetrics) this.#viewed.add(m);
    if (this.#metadata.size > MAX_REMEMBERED) this.#metadata.clear();
    for (const m of meta) this.#metadata.set(m.metric, `${m.type}\u0000${m.help}\u0000${m.unit}`);
    if (this.#created.size > MAX_REMEMBERED) this.#created.clear();
    for (let i = 0; i < createdIds.length; i++) {
      this.#created.set(createdIds[i], Date.parse(createdTimes[i]));
    }
    return { histograms: bodies.rows, exemplars: exemplars.rows, metadata: meta.length };
  }

  /** Forgets what was remembered (the schema was reset under the writer, in tests). */
  forget(): void {
    this.#viewed.clear();
    this.#metadata.clear();
    this.#created.clear();
  }
}

/** One row per histogram of `x` into `rows` (columns as in insertBodies). */
function encodeBodies(rows: CopyRows, id: number, x: ModelSeries): void {
  const hs = x.histograms!;
  for (let i = 0; i < hs.length; i++) {
    const h = hs[i];
    rows.row(14).int8(id).time(x.timestamps[i]).bool(h.float).int2(h.schema).int2(h.resetHint)
      .float8(h.scalars, 0).float8(h.scalars, 1).float8(h.scalars, 2).float8(h.scalars, 3)
      .int4Array(h.positiveSpans).float8Array(h.positiveCounts)
      .int4Array(h.negativeSpans).float8Array(h.negativeCounts)
      .float8Array(h.customValues);
  }
}

const BODY_COLUMNS = `series_id, time, is_float, schema, reset_hint, count, sum, zero_threshold,
  zero_count, positive_spans, positive_counts, negative_spans, negative_counts, custom_values`;

async function insertBodies(tx: TransactionSql, body: Uint8Array): Promise<void> {
  await tx`CREATE TEMP TABLE IF NOT EXISTS promscale_histograms_in
           (LIKE _prom_data.histogram_samples INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`;
  await copyIn(
    tx.unsafe(`COPY promscale_histograms_in (${BODY_COLUMNS}) FROM STDIN (FORMAT binary)`),
    body,
  );
  await tx.unsafe(`INSERT INTO _prom_data.histogram_samples (${BODY_COLUMNS})
                   SELECT ${BODY_COLUMNS} FROM promscale_histograms_in
                   ON CONFLICT (series_id, time) DO NOTHING`);
}

async function insertExemplars(tx: TransactionSql, body: Uint8Array): Promise<void> {
  await tx`CREATE TEMP TABLE IF NOT EXISTS promscale_exemplars_in
           (LIKE _prom_data.exemplars) ON COMMIT DELETE ROWS`;
  await copyIn(
    tx`COPY promscale_exemplars_in (series_id, time, value, labels) FROM STDIN (FORMAT binary)`,
    body,
  );
  await tx`INSERT INTO _prom_data.exemplars (series_id, time, value, labels)
           SELECT series_id, time, value, labels FROM promscale_exemplars_in
           ON CONFLICT DO NOTHING`;
}
