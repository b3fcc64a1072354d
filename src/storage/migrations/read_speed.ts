/**
 * Faster reads of compressed windows (version 12; docs/storage.md,
 * "Reading both forms"). Same rows, bit for bit; the stored format of
 * `_prom_data.compressed` is unchanged.
 *
 * - `_prom_catalog.decode_window(...)` decodes one window: an inlinable
 *   `LANGUAGE sql` function, so the planner sees its body in every query
 *   that uses it. The arrays are unnested in the select list (one
 *   `ProjectSet`, no tuplestore, as a function scan in `FROM` needs); an
 *   array that is NULL (no corrections, exceptions or raw values) gives
 *   no rows and pads with NULLs. The running sum of the deltas and the
 *   sample's position (`row_number()`, for its time) are one window
 *   aggregate without `ORDER BY`: its input is that `ProjectSet` over a
 *   subquery without `FROM`, so there is no join, sort or parallel plan
 *   that could reorder it; PostgreSQL documents that select-list
 *   set-returning functions give their first results together, then the
 *   second, and so on, and a `WindowAgg` without `ORDER BY` or
 *   `PARTITION BY` reads its input as it comes (checked by
 *   tests/storage/compress_decode_test.ts: plan and values). Version 8's
 *   `WITH ORDINALITY` plus `ORDER BY` did not sort either (the planner
 *   knows an ordinality column is ordered), but cost a function scan's
 *   tuplestore and the window's ordering. `generate_series` for the times
 *   was cheaper per sample but counts 1,000 rows per window in the
 *   planner's estimates, which pushed plans over the JIT threshold.
 * - `_prom_data.compressed_samples` (and so `_prom_data.all_samples` and
 *   every `prom_metric` view, which read it) decodes through it.
 * - `_prom_catalog.series_samples(id, lo, hi)` decodes the windows that lie
 *   entirely inside [lo, hi] without comparing each sample's time; of the
 *   two windows at the edges, only the part inside is decoded (when their
 *   samples are on the step) and filtered per sample.
 * - `prom_api.metric_samples(metric, lo, hi)`: a metric's samples in
 *   [lo, hi] with the bounds reaching the compressed windows' key (a time
 *   predicate on a `prom_metric` view cannot: PostgreSQL does not carry an
 *   inequality on a computed column over to the columns it is computed
 *   from, and plain SQL has no planner support functions).
 *
 * @module
 */
import type { Migration } from "./schema.ts";
import { COMPRESS_WINDOW } from "./compressed.ts";

const SQL = `
-- One compressed window's samples in time order (columns of a
-- _prom_data.compressed row; format in migrations/compressed.ts). Not
-- STRICT and a single SELECT, so it is inlined where it is called.
CREATE FUNCTION _prom_catalog.decode_window(
  min_time timestamptz, step_ms int, t_corr int4[], v_scale float8, v_base int8,
  v_delta int4[], v_exc float8[], v_raw float8[])
RETURNS TABLE ("time" timestamptz, value float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT min_time + ((row_number() OVER w - 1) * step_ms + coalesce(s.tc, 0))
                    * interval '1 millisecond',
         CASE WHEN v_scale IS NULL THEN s.r
              ELSE coalesce(s.e, (v_base + sum(s.d) OVER w)::float8 / v_scale) END
  -- (in the order the window uses them: then no Subquery Scan sits between)
  FROM (SELECT unnest(t_corr) AS tc, unnest(v_raw) AS r, unnest(v_exc) AS e,
          unnest(v_delta) AS d) s
  WINDOW w AS (ROWS UNBOUNDED PRECEDING)
$$;

CREATE OR REPLACE VIEW _prom_data.compressed_samples AS
SELECT c.series_id, z.time, z.value
FROM _prom_data.compressed c
CROSS JOIN LATERAL _prom_catalog.decode_window(c.min_time, c.step_ms, c.t_corr, c.v_scale,
  c.v_base, c.v_delta, c.v_exc, c.v_raw) z;

CREATE OR REPLACE FUNCTION _prom_catalog.series_samples(sid bigint, lo timestamptz, hi timestamptz)
RETURNS TABLE ("time" timestamptz, value float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT s.time, s.value FROM _prom_data.samples s
  WHERE s.series_id = sid AND s.time >= lo AND s.time <= hi
    AND (s.time >= (SELECT horizon FROM _prom_catalog.compress_state)
         OR NOT _prom_catalog.compressed_has(s.series_id, s.time))
  UNION ALL
  -- windows entirely inside [lo, hi]: every sample, no comparison
  SELECT z.time, z.value FROM _prom_data.compressed c
  CROSS JOIN LATERAL _prom_catalog.decode_window(c.min_time, c.step_ms, c.t_corr, c.v_scale,
    c.v_base, c.v_delta, c.v_exc, c.v_raw) z
  WHERE c.series_id = sid
    AND c.window_start >= date_bin('${COMPRESS_WINDOW}', lo, 'epoch') AND c.window_start <= hi
    AND c.min_time >= lo AND c.max_time <= hi
  UNION ALL
  -- the windows across a bound: filtered per sample. On the step (no
  -- corrections), only the positions from the first at or after lo to the
  -- last at or before hi are decoded: the arrays are sliced there, and the
  -- deltas before the slice are summed into the base.
  SELECT z.time, z.value FROM _prom_data.compressed c
  CROSS JOIN LATERAL (SELECT
      CASE WHEN c.t_corr IS NULL AND c.step_ms > 0 AND lo > c.min_time
        THEN least(c.n + 1, floor(extract(epoch FROM lo - c.min_time) * 1000 / c.step_ms) + 1)::int
        ELSE 1 END AS i0,
      CASE WHEN c.t_corr IS NULL AND c.step_ms > 0 AND hi < c.max_time
        THEN greatest(0, floor(extract(epoch FROM hi - c.min_time) * 1000 / c.step_ms) + 1)::int
        ELSE c.n END AS i1) b
  -- (a sub-select among the decoder's arguments would keep it from being inlined)
  CROSS JOIN LATERAL (SELECT coalesce(sum(d), 0) AS k FROM unnest(c.v_delta[1:b.i0 - 1]) AS d) p
  CROSS JOIN LATERAL _prom_catalog.decode_window(
    c.min_time + (b.i0 - 1) * c.step_ms * interval '1 millisecond', c.step_ms, c.t_corr, c.v_scale,
    c.v_base + p.k, c.v_delta[b.i0:b.i1], c.v_exc[b.i0:b.i1], c.v_raw[b.i0:b.i1]) z
  WHERE c.series_id = sid
    AND c.window_start >= date_bin('${COMPRESS_WINDOW}', lo, 'epoch') AND c.window_start <= hi
    AND c.max_time >= lo AND c.min_time <= hi AND (c.min_time < lo OR c.max_time > hi)
    AND z.time >= lo AND z.time <= hi
$$;

-- The prom_metric views of version 10, with series_id taken from the series
-- rather than from the samples: a condition on it (WHERE series_id = 42)
-- then selects the series through its key before any sample is read, and
-- reaches the samples' and the compressed windows' keys as an equality.
-- Same columns, same order; every existing view is recreated.
CREATE OR REPLACE FUNCTION _prom_catalog.create_metric_view(m _prom_catalog.metric) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  n int := coalesce(array_length(m.label_keys, 1), 0);
  cols text[] := '{}';
  i int;
BEGIN
  FOR i IN 1 .. least(m.id_columns_from, n) LOOP
    cols := cols || format('ser.labels ->> %L AS %I', m.label_keys[i], m.column_names[i]);
  END LOOP;
  FOR i IN 1 .. least(m.id_columns_from, n) LOOP
    cols := cols || format('(ser.label_ids ->> %L)::int AS %I', m.label_keys[i], m.id_column_names[i]);
  END LOOP;
  FOR i IN m.id_columns_from + 1 .. n LOOP
    cols := cols || format('ser.labels ->> %L AS %I', m.label_keys[i], m.column_names[i])
                 || format('(ser.label_ids ->> %L)::int AS %I', m.label_keys[i], m.id_column_names[i]);
  END LOOP;
  cols := cols[1:1596];
  EXECUTE format(
    'CREATE OR REPLACE VIEW prom_metric.%I AS SELECT s.time, s.value, ser.id AS series_id, '
    '(ser.labels - ''__name__'') AS labels%s '
    'FROM _prom_catalog.series ser CROSS JOIN LATERAL ('
    'SELECT r.time, r.value FROM _prom_data.samples r '
    'WHERE r.series_id = ser.id AND (r.time >= (SELECT horizon FROM _prom_catalog.compress_state) '
    'OR NOT _prom_catalog.compressed_has(r.series_id, r.time)) '
    'UNION ALL '
    'SELECT z.time, z.value FROM _prom_data.compressed_samples z '
    'WHERE z.series_id = ser.id) s '
    'WHERE ser.metric_name = %L',
    m.view_name,
    CASE WHEN cardinality(cols) > 0 THEN ', ' || array_to_string(cols, ', ') ELSE '' END,
    m.metric_name);
END $$;

SELECT _prom_catalog.create_metric_view(m) FROM _prom_catalog.metric m;

-- A metric's samples in [lo, hi], both forms, each once: what
-- prom_metric.<metric> WHERE time BETWEEN lo AND hi returns, with the bounds
-- reaching the compressed windows' key. Label columns: join
-- prom_series.<metric> USING (series_id). Inlined, so conditions on
-- series_id or labels reach the series before any sample is read.
CREATE FUNCTION prom_api.metric_samples(metric text, lo timestamptz, hi timestamptz)
RETURNS TABLE (series_id bigint, "time" timestamptz, value float8, labels jsonb)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT ser.id, x.time, x.value, ser.labels - '__name__'
  FROM _prom_catalog.series ser
  CROSS JOIN LATERAL _prom_catalog.series_samples(ser.id, lo, hi) x
  WHERE ser.metric_name = metric
$$;
`;

/** Version 12: compressed windows decode faster; metric_samples() reads a metric with bounds. */
export const READ_SPEED_MIGRATION: Migration = {
  version: 12,
  description: "faster reads of compressed windows",
  sql: SQL,
};
