/**
 * The HA reconciler sees compressed neighbours (version 15).
 *
 * `ha_reconcile` decides a staged (non-leader) sample by the stored
 * samples around it: a neighbour closer than half the series' interval
 * makes it a copy, none makes it a fill. Up to version 14 it looked at the
 * rows only, so a follower sample for a time the compactor had already
 * compressed (a replica more than `--storage.compress-after` behind, say
 * one replaying its WAL after a long outage of its own) found no
 * neighbours and was stored beside the leader's round: a doubled round
 * whenever the two replicas' scrape phases differ.
 *
 * Now the neighbour look-ups (`ha_reconcile`'s previous and next stored
 * sample, and `ha_measure_interval`'s spacings) also read the times of
 * the series' compressed windows, but only when the look-up reaches below
 * `compress_state.horizon` (nothing newer is ever compressed), so the
 * usual case, samples minutes old, runs exactly the row look-ups as
 * before.
 *
 * The two functions are re-created from version 4's text with those
 * look-ups replaced (each replacement must match exactly once, checked
 * when the SQL is built), rather than copied here whole.
 *
 * @module
 */
import { COMPRESS_WINDOW } from "./compressed.ts";
import { HA_PER_SERIES, type Migration } from "./schema.ts";

const COMPRESSED_TIMES = `
-- The sample times of series 'sid' in [lo, hi] held in compressed windows
-- (a time may also be in a row: a late copy). Nothing, without reading a
-- window, when lo is not below the compaction horizon.
CREATE FUNCTION _prom_catalog.ha_compressed_times(sid bigint, lo timestamptz, hi timestamptz)
RETURNS TABLE (t timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT z.t FROM _prom_data.compressed c
  CROSS JOIN LATERAL (
    SELECT c.min_time + ((u.i - 1) * c.step_ms + coalesce(u.tc, 0)) * interval '1 millisecond'
    FROM unnest(coalesce(c.t_corr, array_fill(0, ARRAY[c.n]))) WITH ORDINALITY AS u(tc, i)
  ) z(t)
  WHERE lo < (SELECT horizon FROM _prom_catalog.compress_state)
    AND c.series_id = sid
    AND c.window_start >= date_bin('${COMPRESS_WINDOW}', lo, 'epoch')
    AND c.window_start <= hi
    AND c.max_time >= lo AND c.min_time <= hi
    AND z.t >= lo AND z.t <= hi
$$;
`;

/** [text in version 4, its replacement] pairs; each must occur exactly once. */
const REPLACEMENTS: [string, string][] = [
  [
    `      (SELECT max(x.time) FROM _prom_data.samples x
       WHERE x.series_id = c.series_id AND x.time < c.time AND x.time >= c.time - look) AS prev,
      (SELECT min(x.time) FROM _prom_data.samples x
       WHERE x.series_id = c.series_id AND x.time >= c.time AND x.time <= c.time + look) AS next,`,
    `      greatest(
        (SELECT max(x.time) FROM _prom_data.samples x
         WHERE x.series_id = c.series_id AND x.time < c.time AND x.time >= c.time - look),
        (SELECT max(z.t) FROM _prom_catalog.ha_compressed_times(c.series_id, c.time - look, c.time) z
         WHERE z.t < c.time)) AS prev,
      least(
        (SELECT min(x.time) FROM _prom_data.samples x
         WHERE x.series_id = c.series_id AND x.time >= c.time AND x.time <= c.time + look),
        (SELECT min(z.t) FROM _prom_catalog.ha_compressed_times(c.series_id, c.time, c.time + look) z
        )) AS next,`,
  ],
  [
    `  WITH pts AS (
    SELECT x.time AS t FROM _prom_data.samples x
    WHERE x.series_id = sid AND x.time <= at + look AND x.time >= at - look
      AND NOT (own_only AND EXISTS (
        SELECT 1 FROM _prom_data.ha_filled f WHERE f.series_id = sid AND f.time = x.time))
    ORDER BY x.time DESC LIMIT 16
  ), sp AS (`,
    `  WITH pts AS (
    (SELECT x.time AS t FROM _prom_data.samples x
     WHERE x.series_id = sid AND x.time <= at + look AND x.time >= at - look
       AND NOT (own_only AND EXISTS (
         SELECT 1 FROM _prom_data.ha_filled f WHERE f.series_id = sid AND f.time = x.time))
     ORDER BY x.time DESC LIMIT 16)
    UNION
    (SELECT z.t FROM _prom_catalog.ha_compressed_times(sid, at - look, at + look) z
     ORDER BY z.t DESC LIMIT 16)
    ORDER BY t DESC LIMIT 16
  ), sp AS (`,
  ],
];

/** The text of function `name` as version 4 created it, up to its closing `end` line. */
function functionText(name: string, end: string): string {
  const start = HA_PER_SERIES.indexOf(`CREATE FUNCTION _prom_catalog.${name}(`);
  const stop = HA_PER_SERIES.indexOf(end, start);
  if (start < 0 || stop < 0) throw new Error(`migration 15: ${name} not found in version 4`);
  return HA_PER_SERIES.slice(start, stop + end.length)
    .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION");
}

/** Version 15's SQL: version 4's two functions with the look-ups above replaced. */
export function haCompressedSql(): string {
  let fns = functionText("ha_measure_interval", "\n$fn$;") + "\n\n" +
    functionText("ha_reconcile", "\nEND $$;");
  for (const [from, to] of REPLACEMENTS) {
    const at = fns.indexOf(from);
    if (at < 0 || fns.indexOf(from, at + 1) >= 0) {
      throw new Error(`migration 15: a look-up to replace is not in version 4 exactly once`);
    }
    fns = fns.slice(0, at) + to + fns.slice(at + from.length);
  }
  return COMPRESSED_TIMES + "\n" + fns + "\n";
}

/** Version 15: the HA reconciler's neighbour look-ups read compressed windows too. */
export const HA_COMPRESSED_MIGRATION: Migration = {
  version: 15,
  description: "HA reconciler sees compressed neighbours",
  // Built when migrating, not at import: schema.ts imports this module.
  sql: () => haCompressedSql(),
};
