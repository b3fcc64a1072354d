/**
 * The `prom_metric` views read each series of their metric on its own
 * (version 10). Version 8 built them over `_prom_data.all_samples`, a
 * `UNION ALL` that PostgreSQL cannot flatten (its compressed leaf has a
 * lateral subquery with a window function), so the view's `metric_name`
 * filter never reached the samples: one metric's view scanned every
 * metric's rows. Now the view starts from the metric's series and reads,
 * per series, its rows (through the `(series_id, time)` key, with the
 * view's time predicates pushed into that scan) and its compressed
 * windows (through their `(series_id, window_start)` key). Same columns,
 * same order; every existing view is recreated.
 *
 * @module
 */
import type { Migration } from "./schema.ts";

const SQL = `
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
    '(ser.labels - ''__name__'') AS labels%s '
    'FROM _prom_catalog.series ser CROSS JOIN LATERAL ('
    'SELECT r.time, r.value, r.series_id FROM _prom_data.samples r '
    'WHERE r.series_id = ser.id AND (r.time >= (SELECT horizon FROM _prom_catalog.compress_state) '
    'OR NOT _prom_catalog.compressed_has(r.series_id, r.time)) '
    'UNION ALL '
    'SELECT z.time, z.value, z.series_id FROM _prom_data.compressed_samples z '
    'WHERE z.series_id = ser.id) s '
    'WHERE ser.metric_name = %L',
    m.view_name,
    CASE WHEN cardinality(cols) > 0 THEN ', ' || array_to_string(cols, ', ') ELSE '' END,
    m.metric_name);
END $$;

SELECT _prom_catalog.create_metric_view(m) FROM _prom_catalog.metric m;
`;

/** Version 10: prom_metric views read per series, so a metric's view reads only its own samples. */
export const VIEWS_PER_SERIES_MIGRATION: Migration = {
  version: 10,
  description: "prom_metric views read their own series only",
  sql: SQL,
};
