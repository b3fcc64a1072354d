#!/usr/bin/env bash
# Copies the data of a connector's embedded database into a PostgreSQL
# server, through the SQL port the connector serves (--db.embedded-sql-listen),
# with nothing but psql (any version from 12 on):
#
#   packaging/move-to-server.sh postgres://postgres@127.0.0.1:5433/postgres \
#     postgres://promscale:change-me@db.example:5432/promscale
#
# The server's database must already have the connector's schema: start the
# connector on it once, `promscale --db.uri <server> --startup.only`. What is
# copied: every series and sample (binary COPY, so staleness markers keep
# their exact bits) and the retention settings. The metric views are made by
# the schema's own functions as on any first write. Not copied yet: native
# histogram samples, exemplars, metric metadata and created timestamps (the
# remote write 2.0 data model's tables). HA leases are not copied:
# the first replica heard from becomes leader again. Samples the server
# already has are left as they are, so the script can run again after more
# writes (the connector may keep running meanwhile).
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 <embedded-sql-uri> <server-uri>" >&2
  exit 2
fi
from=$1
to=$2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

if ! psql_ -At -d "$to" -c "SELECT 1 FROM _prom_catalog.migrations LIMIT 1" >/dev/null 2>&1; then
  echo "$0: the server has no connector schema: run 'promscale --db.uri <server-uri> --startup.only' once first" >&2
  exit 1
fi

# Export, in one transaction of the embedded database (a consistent copy).
psql_ -d "$from" <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
\copy (SELECT s.labels, x.time, x.value FROM _prom_data.samples x JOIN _prom_catalog.series s ON s.id = x.series_id) TO '$work/samples' (FORMAT binary)
\copy (SELECT s.labels FROM _prom_catalog.series s) TO '$work/series' (FORMAT binary)
\copy (SELECT NULL::text, retention_period FROM _prom_catalog.default_retention UNION ALL SELECT metric_name, retention_period FROM _prom_catalog.metric_retention) TO '$work/retention' (FORMAT binary)
COMMIT;
SQL

# Import, in one transaction of the server.
psql_ -d "$to" <<SQL
SET client_min_messages TO warning;
BEGIN;
CREATE TEMP TABLE move_series (labels jsonb) ON COMMIT DROP;
CREATE TEMP TABLE move_samples (labels jsonb, time timestamptz, value float8) ON COMMIT DROP;
CREATE TEMP TABLE move_retention (metric_name text, retention_period interval) ON COMMIT DROP;
\copy move_series FROM '$work/series' (FORMAT binary)
\copy move_samples FROM '$work/samples' (FORMAT binary)
\copy move_retention FROM '$work/retention' (FORMAT binary)
SELECT count(*) FROM _prom_catalog.get_or_create_series(ARRAY(SELECT labels FROM move_series)) \g /dev/null
SELECT count(*) FROM _prom_catalog.ensure_partitions(ARRAY(SELECT DISTINCT time FROM move_samples)) \g /dev/null
INSERT INTO _prom_data.samples (series_id, time, value)
SELECT s.id, m.time, m.value
FROM move_samples m
JOIN _prom_catalog.series s ON s.labels_hash = _prom_catalog.labels_hash(m.labels)
ON CONFLICT DO NOTHING;
SELECT prom_api.set_default_retention_period(retention_period)
FROM move_retention WHERE metric_name IS NULL \g /dev/null
SELECT prom_api.set_metric_retention_period(metric_name, retention_period)
FROM move_retention WHERE metric_name IS NOT NULL \g /dev/null
COMMIT;
SQL
echo "moved $(psql_ -At -d "$from" -c "SELECT count(*) FROM _prom_data.samples") samples of $(psql_ -At -d "$from" -c "SELECT count(*) FROM _prom_catalog.series") series"
