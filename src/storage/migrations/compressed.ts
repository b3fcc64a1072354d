/**
 * Compressed storage (version 8; design in docs/storage.md).
 *
 * `_prom_data.compressed` holds one row per series and 2-hour window
 * (`date_bin('2 hours', time, epoch)`) of sealed data, made by the compactor
 * (src/storage/compactor.ts) from the rows of a sealed partition:
 *
 * - times: `min_time` plus `(i - 1) * step_ms + t_corr[i]` ms for the i-th
 *   sample; `t_corr` is NULL when every sample is exactly on the step.
 * - values, when a scale fits (`v_scale` not NULL): the integer
 *   `v_base + sum(v_delta[1..i])` divided by `v_scale` (a power of ten or
 *   of two), which the compactor checked gives back every value bit for
 *   bit; positions whose value cannot be written so (NaN with any payload,
 *   ±Inf, -0, a stray value) hold their float8 in the sparse `v_exc` (NULL
 *   elsewhere, so only a bitmap is paid for them).
 * - otherwise the values as they are, in `v_raw`.
 *
 * The arrays are TOAST-compressed with lz4 (every row, see toast_pad): runs of equal deltas and
 * corrections (regular scrapes, constant gauges) shrink to almost nothing.
 * Float8 arrays and float8 columns keep every bit; the float8 values in
 * `v_exc` and `v_raw` are written from their exact bits (binary COPY), never through text.
 *
 * Reading: `_prom_data.compressed_samples` decodes every row (a view);
 * `_prom_data.all_samples` is the rows plus the compressed samples, each
 * sample once: a row whose (series, time) is also in a compressed window
 * (a retried or replayed write that arrived after compaction) is hidden
 * (the compressed copy was first, as ON CONFLICT DO NOTHING would keep it).
 * Only rows older than `compress_state.horizon` can be such a copy, so
 * only those are checked. The `prom_metric` views read `all_samples`;
 * `_prom_catalog.series_samples(id, from, to)` is the same for one series
 * with explicit bounds that reach the compressed rows' index (remote read
 * uses it).
 */
import type { Migration } from "./schema.ts";

/**
 * The width of a compressed window, aligned on the epoch. Two hours, as a
 * Prometheus TSDB block: a dashboard's last hours decode a few windows
 * per series, not a day, and the per-row overhead is still well below a
 * byte per sample at 15 s scrapes.
 */
export const COMPRESS_WINDOW = "2 hours";

const SQL = `
CREATE TABLE _prom_data.compressed (
  series_id    bigint NOT NULL,
  window_start timestamptz NOT NULL,
  min_time     timestamptz NOT NULL,
  max_time     timestamptz NOT NULL,
  n            int NOT NULL,
  step_ms      int NOT NULL,
  t_corr       int4[],
  v_scale      float8,
  v_base       int8,
  v_delta      int4[],
  v_exc        float8[],
  v_raw        float8[],
  -- 2 kB of zeros (lz4 makes them about 20 bytes): PostgreSQL compresses a
  -- row's values only when the row is longer than about 2 kB
  -- (TOAST_TUPLE_THRESHOLD; toast_tuple_target only lowers where it stops),
  -- and a window of a few hundred samples is shorter than that.
  toast_pad    bytea,
  PRIMARY KEY (series_id, window_start),
  CHECK (min_time <= max_time AND n > 0),
  CHECK ((v_scale IS NULL) = (v_raw IS NOT NULL))
) WITH (toast_tuple_target = 128);
-- MAIN: compressed inline; moved to the TOAST table only when a row is
-- still longer than about 8 kB after compression (many small out-of-line
-- values would cost a TOAST row and index entry each).
ALTER TABLE _prom_data.compressed
  ALTER t_corr SET STORAGE MAIN, ALTER v_delta SET STORAGE MAIN, ALTER v_exc SET STORAGE MAIN,
  ALTER v_raw SET STORAGE MAIN, ALTER toast_pad SET STORAGE MAIN;
-- lz4 where this PostgreSQL has it (built --with-lz4), else pglz (the
-- embedded PGlite build, for one).
DO $$
BEGIN
  ALTER TABLE _prom_data.compressed
    ALTER t_corr SET COMPRESSION lz4, ALTER v_delta SET COMPRESSION lz4,
    ALTER v_exc SET COMPRESSION lz4, ALTER v_raw SET COMPRESSION lz4,
    ALTER toast_pad SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'lz4 is not available, compressed windows use pglz: %', SQLERRM;
END $$;

-- All rows older than 'horizon' may have a compressed copy; newer ones
-- cannot (windows are compacted only once sealed, horizon only grows).
CREATE TABLE _prom_catalog.compress_state (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  horizon  timestamptz NOT NULL
);
INSERT INTO _prom_catalog.compress_state VALUES (true, '-infinity');

CREATE VIEW _prom_data.compressed_samples AS
SELECT c.series_id,
  c.min_time + ((x.i - 1) * c.step_ms + coalesce(x.tc, 0)) * interval '1 millisecond' AS time,
  CASE WHEN c.v_scale IS NULL THEN x.r
       ELSE coalesce(x.e, (c.v_base + x.k)::float8 / c.v_scale) END AS value
FROM _prom_data.compressed c
CROSS JOIN LATERAL (
  SELECT u.i, u.tc, u.e, u.r, sum(u.d) OVER (ORDER BY u.i ROWS UNBOUNDED PRECEDING) AS k
  FROM unnest(c.v_delta, c.t_corr, c.v_exc, c.v_raw) WITH ORDINALITY AS u(d, tc, e, r, i)
) x;

-- True when series 'sid' has a compressed sample at 't'.
CREATE FUNCTION _prom_catalog.compressed_has(sid bigint, t timestamptz) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT EXISTS (
    SELECT 1 FROM _prom_data.compressed c
    CROSS JOIN LATERAL unnest(coalesce(c.t_corr, array_fill(0, ARRAY[c.n])))
      WITH ORDINALITY AS u(tc, i)
    WHERE c.series_id = sid AND c.window_start = date_bin('${COMPRESS_WINDOW}', t, 'epoch')
      AND t BETWEEN c.min_time AND c.max_time
      AND c.min_time + ((u.i - 1) * c.step_ms + u.tc) * interval '1 millisecond' = t)
$$;

CREATE VIEW _prom_data.all_samples AS
SELECT s.series_id, s.time, s.value FROM _prom_data.samples s
WHERE s.time >= (SELECT horizon FROM _prom_catalog.compress_state)
   OR NOT _prom_catalog.compressed_has(s.series_id, s.time)
UNION ALL
SELECT z.series_id, z.time, z.value FROM _prom_data.compressed_samples z;

-- The samples of one series in [lo, hi], both forms, each once; the bounds
-- reach the compressed rows' primary key (a view cannot pass them down).
CREATE FUNCTION _prom_catalog.series_samples(sid bigint, lo timestamptz, hi timestamptz)
RETURNS TABLE ("time" timestamptz, value float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT s.time, s.value FROM _prom_data.samples s
  WHERE s.series_id = sid AND s.time >= lo AND s.time <= hi
    AND (s.time >= (SELECT horizon FROM _prom_catalog.compress_state)
         OR NOT _prom_catalog.compressed_has(s.series_id, s.time))
  UNION ALL
  SELECT z.time, z.value FROM _prom_data.compressed c
  CROSS JOIN LATERAL (
    SELECT c.min_time + ((x.i - 1) * c.step_ms + coalesce(x.tc, 0)) * interval '1 millisecond'
             AS time,
      CASE WHEN c.v_scale IS NULL THEN x.r
           ELSE coalesce(x.e, (c.v_base + x.k)::float8 / c.v_scale) END AS value
    FROM (SELECT u.i, u.tc, u.e, u.r,
            sum(u.d) OVER (ORDER BY u.i ROWS UNBOUNDED PRECEDING) AS k
          FROM unnest(c.v_delta, c.t_corr, c.v_exc, c.v_raw) WITH ORDINALITY AS u(d, tc, e, r, i)
         ) x
  ) z
  WHERE c.series_id = sid
    AND c.window_start >= date_bin('${COMPRESS_WINDOW}', lo, 'epoch')
    AND c.window_start <= hi
    AND c.max_time >= lo AND c.min_time <= hi
    AND z.time >= lo AND z.time <= hi
$$;

-- The prom_metric views read both forms: version 6's create_metric_view,
-- reading _prom_data.all_samples instead of _prom_data.samples; every
-- existing view is recreated (same columns, same order).
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
    'CREATE OR REPLACE VIEW prom_metric.%I AS SELECT s.time, s.value, s.series_id, '
    '(ser.labels - ''__name__'') AS labels%s FROM _prom_data.all_samples s '
    'JOIN _prom_catalog.series ser ON ser.id = s.series_id WHERE ser.metric_name = %L',
    m.view_name,
    CASE WHEN cardinality(cols) > 0 THEN ', ' || array_to_string(cols, ', ') ELSE '' END,
    m.metric_name);
END $$;

SELECT _prom_catalog.create_metric_view(m) FROM _prom_catalog.metric m;

-- A series deleted (prom_api.drop_metric) takes its compressed windows along.
CREATE FUNCTION _prom_catalog.drop_compressed_of_deleted_series() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM _prom_data.compressed c USING gone WHERE c.series_id = gone.id;
  RETURN NULL;
END $$;
CREATE TRIGGER series_drop_compressed AFTER DELETE ON _prom_catalog.series
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
  EXECUTE FUNCTION _prom_catalog.drop_compressed_of_deleted_series();

-- Retention of compressed windows: deletes, at most 'max_rows' per call,
-- the windows whose newest sample is older than their metric's retention
-- (the default or the metric's own). A window straddling the cut is kept
-- whole until it is entirely expired, as a partition is.
CREATE FUNCTION _prom_catalog.drop_expired_compressed(max_rows int)
RETURNS TABLE (metric_name text, windows bigint)
LANGUAGE sql AS $$
  WITH d AS (SELECT retention_period AS r FROM _prom_catalog.default_retention),
  doomed AS (
    SELECT c.ctid AS t, s.metric_name
    FROM _prom_data.compressed c
    JOIN _prom_catalog.series s ON s.id = c.series_id
    LEFT JOIN _prom_catalog.metric_retention m ON m.metric_name = s.metric_name
    WHERE c.max_time < now() - coalesce(m.retention_period, (SELECT r FROM d))
    LIMIT max_rows
  ), gone AS (
    DELETE FROM _prom_data.compressed c USING doomed
    WHERE c.ctid = doomed.t
    RETURNING doomed.metric_name
  )
  SELECT metric_name, count(*) FROM gone GROUP BY metric_name
$$;
`;

/** Version 8: compressed per-series day windows, read through the same views. */
export const COMPRESSED_MIGRATION: Migration = {
  version: 8,
  description: "compressed storage of sealed windows",
  sql: SQL,
};
