/**
 * The Prometheus data model beyond float samples (issue 19): native
 * histograms, exemplars, metric metadata and created timestamps.
 *
 * - `_prom_data.histogram_samples`: one row per histogram sample, keyed
 *   (series_id, time), every field as received (integer histograms' deltas
 *   stored as absolute bucket counts, which are exact below 2^53). A
 *   histogram sample ALSO has its row in `_prom_data.samples` (value = its
 *   count, or the staleness marker), its "presence row": that row goes
 *   through HA de-duplication, staging, reconciliation and retention exactly
 *   as a float sample does, and a histogram exists where its presence row
 *   does. Bodies whose presence row was never stored (a follower's copy the
 *   reconciler dropped) are invisible and removed by
 *   `_prom_catalog.histogram_gc`.
 * - `prom_histogram.<metric>`: one view per histogram metric (named as its
 *   `prom_metric` view): time, series_id, labels, count, sum, schema,
 *   zero bucket, spans, bucket counts, custom bounds, reset hint, the whole
 *   histogram as a `prom_api.native_histogram`, and one column per label.
 * - `prom_api.histogram_count/sum/quantile/buckets(native_histogram)`.
 * - `_prom_data.exemplars` and the view `prom_api.exemplars`.
 * - `_prom_catalog.metric_metadata` and the view `prom_api.metric_metadata`.
 * - `_prom_data.created_timestamps`: the created (start) timestamps of
 *   series, one row per distinct value.
 *
 * @module
 */
import type { Migration } from "./schema.ts";

const SQL = `
CREATE SCHEMA IF NOT EXISTS prom_histogram;

CREATE TYPE prom_api.native_histogram AS (
  schema          int,
  count           double precision,
  sum             double precision,
  zero_threshold  double precision,
  zero_count      double precision,
  positive_spans  int[],
  positive_counts double precision[],
  negative_spans  int[],
  negative_counts double precision[],
  custom_values   double precision[]
);

CREATE TABLE _prom_data.histogram_samples (
  series_id       bigint NOT NULL,
  time            timestamptz NOT NULL,
  is_float        boolean NOT NULL,
  schema          smallint NOT NULL,
  reset_hint      smallint NOT NULL,
  count           double precision NOT NULL,
  sum             double precision NOT NULL,
  zero_threshold  double precision NOT NULL,
  zero_count      double precision NOT NULL,
  positive_spans  int[] NOT NULL,
  positive_counts double precision[] NOT NULL,
  negative_spans  int[] NOT NULL,
  negative_counts double precision[] NOT NULL,
  custom_values   double precision[] NOT NULL,
  received_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (series_id, time)
);

-- Histogram metrics that have a prom_histogram view, and how many label
-- columns it has (recreated when the metric gains label keys).
CREATE TABLE _prom_catalog.histogram_metric (
  metric_name text PRIMARY KEY,
  view_name   text NOT NULL,
  key_count   int NOT NULL
);

CREATE TABLE _prom_data.exemplars (
  series_id bigint NOT NULL,
  time      timestamptz NOT NULL,
  value     double precision NOT NULL,
  labels    jsonb NOT NULL,
  PRIMARY KEY (series_id, time, labels)
);

CREATE TABLE _prom_catalog.metric_metadata (
  metric_name text PRIMARY KEY,
  type        text NOT NULL,
  help        text NOT NULL,
  unit        text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE _prom_data.created_timestamps (
  series_id bigint NOT NULL,
  created   timestamptz NOT NULL,
  PRIMARY KEY (series_id, created)
);

CREATE VIEW prom_api.metric_metadata AS
  SELECT metric_name, type, help, unit, updated_at FROM _prom_catalog.metric_metadata;

CREATE VIEW prom_api.exemplars AS
  SELECT ser.metric_name, e.time, e.value, e.labels AS exemplar_labels,
         (ser.labels - '__name__') AS series_labels, e.series_id
  FROM _prom_data.exemplars e JOIN _prom_catalog.series ser ON ser.id = e.series_id;

-- The upper bound of exponential bucket 'idx' of 'schema' (2^(idx * 2^-schema)).
CREATE FUNCTION prom_api.histogram_bucket_bound(idx int, schema int) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN schema <= 0 THEN power(2::float8, idx::float8 * (1 << -schema))
              ELSE power(2::float8, idx::float8 / (1 << schema)) END
$$;

-- Every bucket of a histogram, lowest first: negative buckets (from the
-- most negative), the zero bucket, positive buckets; for custom buckets
-- (schema -53) the bounds come from custom_values. Empty buckets are left
-- out, as Prometheus's bucket iterators do.
CREATE FUNCTION prom_api.histogram_buckets(h prom_api.native_histogram)
RETURNS TABLE (lower double precision, upper double precision, count double precision)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  idx int;
  k int;
  i int;
  j int;
  neg_idx int[] := '{}';
  n int;
  cv double precision[] := coalesce(h.custom_values, '{}');
BEGIN
  IF h IS NULL THEN RETURN; END IF;
  -- Negative buckets, indexes as sent, then walked from the last.
  idx := 0; k := 0;
  FOR i IN 1 .. coalesce(array_length(h.negative_spans, 1), 0) / 2 LOOP
    idx := idx + h.negative_spans[2 * i - 1];
    FOR j IN 1 .. h.negative_spans[2 * i] LOOP
      neg_idx := neg_idx || idx;
      idx := idx + 1;
    END LOOP;
  END LOOP;
  n := coalesce(array_length(neg_idx, 1), 0);
  FOR k IN REVERSE n .. 1 LOOP
    CONTINUE WHEN h.negative_counts[k] = 0;
    lower := -prom_api.histogram_bucket_bound(neg_idx[k], h.schema);
    upper := -prom_api.histogram_bucket_bound(neg_idx[k] - 1, h.schema);
    count := h.negative_counts[k];
    RETURN NEXT;
  END LOOP;
  IF h.zero_count > 0 THEN
    lower := -h.zero_threshold; upper := h.zero_threshold; count := h.zero_count;
    RETURN NEXT;
  END IF;
  idx := 0; k := 0;
  FOR i IN 1 .. coalesce(array_length(h.positive_spans, 1), 0) / 2 LOOP
    idx := idx + h.positive_spans[2 * i - 1];
    FOR j IN 1 .. h.positive_spans[2 * i] LOOP
      k := k + 1;
      IF h.positive_counts[k] <> 0 THEN
        IF h.schema = -53 THEN
          lower := CASE WHEN idx = 0 THEN '-Infinity'::float8 ELSE cv[idx] END;
          upper := CASE WHEN idx >= coalesce(array_length(cv, 1), 0) THEN 'Infinity'::float8
                        ELSE cv[idx + 1] END;
        ELSE
          lower := prom_api.histogram_bucket_bound(idx - 1, h.schema);
          upper := prom_api.histogram_bucket_bound(idx, h.schema);
        END IF;
        count := h.positive_counts[k];
        RETURN NEXT;
      END IF;
      idx := idx + 1;
    END LOOP;
  END LOOP;
END $$;

CREATE FUNCTION prom_api.histogram_count(h prom_api.native_histogram) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT h.count $$;

CREATE FUNCTION prom_api.histogram_sum(h prom_api.native_histogram) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT h.sum $$;

-- The q-quantile of one histogram, as PromQL's histogram_quantile computes
-- it for a native histogram: the bucket where the cumulative count reaches
-- q * count, interpolated linearly within it (a zero bucket next to
-- buckets of one sign only is taken to start or end at 0).
CREATE FUNCTION prom_api.histogram_quantile(q double precision, h prom_api.native_histogram)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  b record;
  lo double precision;
  hi double precision;
  bc double precision := 0;
  cum double precision := 0;
  rank double precision;
  found_one boolean := false;
BEGIN
  IF h IS NULL OR q IS NULL THEN RETURN NULL; END IF;
  IF q < 0 THEN RETURN '-Infinity'; END IF;
  IF q > 1 THEN RETURN 'Infinity'; END IF;
  IF h.count = 0 OR q = 'NaN'::float8 OR h.count = 'NaN'::float8 THEN RETURN 'NaN'; END IF;
  rank := q * h.count;
  FOR b IN SELECT * FROM prom_api.histogram_buckets(h) LOOP
    lo := b.lower; hi := b.upper; bc := b.count;
    found_one := true;
    cum := cum + b.count;
    EXIT WHEN cum >= rank;
  END LOOP;
  IF NOT found_one THEN RETURN 'NaN'; END IF;
  IF lo < 0 AND hi > 0 THEN
    IF coalesce(array_length(h.negative_counts, 1), 0) = 0
       AND coalesce(array_length(h.positive_counts, 1), 0) > 0 THEN
      lo := 0;
    ELSIF coalesce(array_length(h.positive_counts, 1), 0) = 0
       AND coalesce(array_length(h.negative_counts, 1), 0) > 0 THEN
      hi := 0;
    END IF;
  END IF;
  IF cum > h.count THEN cum := h.count; END IF;
  IF cum < rank THEN RETURN hi; END IF;
  -- Custom buckets open to one side: nothing to interpolate in; the finite bound.
  IF lo = '-Infinity'::float8 THEN RETURN hi; END IF;
  IF hi = 'Infinity'::float8 THEN RETURN lo; END IF;
  rank := rank - (cum - bc);
  RETURN lo + (hi - lo) * (rank / bc);
END $$;

-- (Re)creates the prom_histogram view of each metric in 'metrics' that has
-- none or whose prom_metric view gained label columns since. The view
-- joins the histogram bodies to the metric's prom_metric view, so a
-- histogram shows exactly where its presence row is (see above).
CREATE FUNCTION _prom_catalog.register_histogram_views(metrics text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  m _prom_catalog.metric%ROWTYPE;
  hm _prom_catalog.histogram_metric%ROWTYPE;
  cols text;
  i int;
  n int;
BEGIN
  FOR m IN SELECT * FROM _prom_catalog.metric WHERE metric_name = ANY(metrics)
           ORDER BY metric_name LOOP
    n := coalesce(array_length(m.column_names, 1), 0);
    SELECT * INTO hm FROM _prom_catalog.histogram_metric WHERE metric_name = m.metric_name;
    CONTINUE WHEN FOUND AND hm.key_count = n;
    PERFORM pg_advisory_xact_lock(hashtext('_prom_catalog.histogram_metric'),
                                  hashtext(m.metric_name));
    SELECT * INTO hm FROM _prom_catalog.histogram_metric WHERE metric_name = m.metric_name;
    CONTINUE WHEN FOUND AND hm.key_count = n;
    cols := '';
    FOR i IN 1 .. n LOOP
      cols := cols || format(', m.%I', m.column_names[i]);
    END LOOP;
    EXECUTE format(
      'CREATE OR REPLACE VIEW prom_histogram.%I AS SELECT m.time, m.series_id, m.labels, '
      'h.count, h.sum, h.schema, h.zero_threshold, h.zero_count, '
      'h.positive_spans, h.positive_counts, h.negative_spans, h.negative_counts, '
      'h.custom_values, '
      '(ARRAY[''unknown'', ''yes'', ''no'', ''gauge''])[h.reset_hint + 1] AS reset_hint, '
      'h.is_float, '
      'ROW(h.schema, h.count, h.sum, h.zero_threshold, h.zero_count, h.positive_spans, '
      'h.positive_counts, h.negative_spans, h.negative_counts, h.custom_values)'
      '::prom_api.native_histogram AS histogram%s '
      'FROM prom_metric.%I m JOIN _prom_data.histogram_samples h '
      'ON h.series_id = m.series_id AND h.time = m.time',
      m.view_name, cols, m.view_name);
    INSERT INTO _prom_catalog.histogram_metric VALUES (m.metric_name, m.view_name, n)
    ON CONFLICT (metric_name) DO UPDATE SET key_count = EXCLUDED.key_count;
  END LOOP;
END $$;

-- Removes, at most 'max_rows' at a time, histogram bodies received more
-- than 'older_than' ago that have no presence row (copies the HA
-- reconciler dropped) and none waiting in the HA stage.
CREATE FUNCTION _prom_catalog.histogram_gc(older_than interval, max_rows int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  WITH orphans AS (
    SELECT h.series_id, h.time FROM _prom_data.histogram_samples h
    WHERE h.received_at < now() - older_than
      AND NOT EXISTS (SELECT 1 FROM _prom_data.samples s
                      WHERE s.series_id = h.series_id AND s.time = h.time)
      AND NOT EXISTS (SELECT 1 FROM _prom_data.ha_stage st
                      WHERE st.series_id = h.series_id AND st.time = h.time)
    LIMIT max_rows
  )
  DELETE FROM _prom_data.histogram_samples h USING orphans o
  WHERE h.series_id = o.series_id AND h.time = o.time;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
`;

/** Version 7: native histograms, exemplars, metadata, created timestamps. */
export const DATA_MODEL_MIGRATION: Migration = {
  version: 7,
  description: "native histograms, exemplars, metric metadata, created timestamps",
  sql: SQL,
};
