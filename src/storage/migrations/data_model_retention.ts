/**
 * Retention of the data-model tables (version 9). Native histogram samples
 * go with their count row in `_prom_data.samples` (dropped with its
 * partition, or judged a copy by HA): `_prom_catalog.histogram_gc` removes
 * the histogram rows left without one. Exemplars and created timestamps
 * have no row there, so they are deleted here by their own time against
 * their metric's retention period.
 *
 * @module
 */
import type { Migration } from "./schema.ts";

const SQL = `
CREATE FUNCTION _prom_catalog.drop_expired_data_model(max_rows int)
RETURNS TABLE (what text, metric_name text, removed bigint)
LANGUAGE sql AS $$
  WITH d AS (SELECT retention_period AS r FROM _prom_catalog.default_retention),
  ex AS (
    SELECT e.ctid AS t, s.metric_name
    FROM _prom_data.exemplars e
    JOIN _prom_catalog.series s ON s.id = e.series_id
    LEFT JOIN _prom_catalog.metric_retention m ON m.metric_name = s.metric_name
    WHERE e.time < now() - coalesce(m.retention_period, (SELECT r FROM d))
    LIMIT max_rows
  ), ex_gone AS (
    DELETE FROM _prom_data.exemplars e USING ex WHERE e.ctid = ex.t RETURNING ex.metric_name
  ), ct AS (
    SELECT c.ctid AS t, s.metric_name
    FROM _prom_data.created_timestamps c
    JOIN _prom_catalog.series s ON s.id = c.series_id
    LEFT JOIN _prom_catalog.metric_retention m ON m.metric_name = s.metric_name
    WHERE c.created < now() - coalesce(m.retention_period, (SELECT r FROM d))
    LIMIT max_rows
  ), ct_gone AS (
    DELETE FROM _prom_data.created_timestamps c USING ct WHERE c.ctid = ct.t
    RETURNING ct.metric_name
  )
  SELECT 'exemplars', metric_name, count(*) FROM ex_gone GROUP BY metric_name
  UNION ALL
  SELECT 'created timestamps', metric_name, count(*) FROM ct_gone GROUP BY metric_name
$$;
`;

/** Version 9: retention reaches exemplars, created timestamps and orphaned histogram rows. */
export const DATA_MODEL_RETENTION_MIGRATION: Migration = {
  version: 9,
  description: "retention of exemplars, created timestamps and histogram rows",
  sql: SQL,
};
