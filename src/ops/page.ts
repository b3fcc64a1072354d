/**
 * The status page: plain server-rendered HTML with inline CSS and SVG, no
 * script. Every value from outside (cluster and replica names above all:
 * any sender chooses them) goes through `esc()`; colours and geometry are
 * computed here, never taken from data.
 */
import type { ClusterStatus, StatusReport } from "./status.ts";
import type { RatePoint } from "./monitor.ts";

/** Escapes text for HTML element content and quoted attribute values. */
export function esc(s: unknown): string {
  return String(s).replace(
    /[&<>"']/g,
    (c) =>
      c === "&"
        ? "&amp;"
        : c === "<"
        ? "&lt;"
        : c === ">"
        ? "&gt;"
        : c === '"'
        ? "&quot;"
        : "&#39;",
  );
}

/** "3d 4h", "5m 2s", "12s". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60), r = s % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${r}s`;
  return `${r}s`;
}

/** An ISO time shown as "2026-11-01 12:00:05 UTC". */
function time(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** A count with thousands separators; rates with one decimal below 100. */
function num(n: number): string {
  if (!Number.isInteger(n) && Math.abs(n) < 100) return n.toFixed(1);
  return Math.round(n).toLocaleString("en-US");
}

const PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16"];

/** A stable colour per leader name, from a fixed palette. */
function colour(name: string): string {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

/** An inline SVG sparkline of the rates (oldest first), one step per reading. */
function sparkline(label: string, points: RatePoint[], pick: (p: RatePoint) => number): string {
  const values = points.map(pick);
  const current = values.length ? values[values.length - 1] : 0;
  const w = 300, h = 40;
  let body: string;
  if (values.length === 0) {
    body = `<text x="4" y="24" font-size="12" fill="#718096">collecting…</text>`;
  } else {
    const max = Math.max(...values, 1e-9);
    const t0 = points[0].from, t1 = points[points.length - 1].at;
    const xs = (t: number) => ((t - t0) / Math.max(1, t1 - t0) * w).toFixed(1);
    const ys = (v: number) => (h - 2 - (v / max) * (h - 4)).toFixed(1);
    const coords = points.flatMap((p, i) => [
      `${xs(p.from)},${ys(values[i])}`,
      `${xs(p.at)},${ys(values[i])}`,
    ]);
    body = `<polyline fill="none" stroke="#2b6cb0" stroke-width="1.5" ` +
      `vector-effect="non-scaling-stroke" points="${coords.join(" ")}"/>`;
  }
  const span = points.length
    ? duration((points[points.length - 1].at - points[0].from) / 1000)
    : "";
  return `<figure class="spark"><figcaption>${esc(label)}: <b>${num(current)}/s</b>` +
    (span ? ` <span class="muted">(last ${span})</span>` : "") + `</figcaption>` +
    `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img" aria-label="${
      esc(label)
    }">${body}</svg></figure>`;
}

/**
 * The leases of the last 24 h as coloured bars, with a red mark at each
 * change of leader. The axis starts 24 h ago, or at the first lease when
 * the cluster is younger, so that short histories stay visible.
 */
function timeline(c: ClusterStatus, now: number): string {
  const w = 1000, h = 22;
  const first = c.timeline.length ? Date.parse(c.timeline[0].start) : now;
  const from = Math.max(now - 24 * 3600 * 1000, Math.min(first, now - 60_000));
  const x = (iso: string) => Math.min(w, Math.max(0, (Date.parse(iso) - from) / (now - from) * w));
  let bars = "";
  const leaders: string[] = [];
  c.timeline.forEach((s, i) => {
    if (!leaders.includes(s.leader)) leaders.push(s.leader);
    const x0 = x(s.start), x1 = Math.max(x0 + 2, x(s.until));
    const tip = `${s.leader}: ${time(s.start)} → ${time(s.until)}`;
    bars += `<rect x="${x0.toFixed(1)}" y="3" width="${(x1 - x0).toFixed(1)}" height="${
      h - 6
    }" fill="${colour(s.leader)}"><title>${esc(tip)}</title></rect>`;
    if (i > 0 && c.timeline[i - 1].leader !== s.leader) {
      bars += `<line class="change" x1="${x0.toFixed(1)}" x2="${x0.toFixed(1)}" y1="0" ` +
        `y2="${h}" stroke="#e53e3e" stroke-width="4" vector-effect="non-scaling-stroke"/>`;
    }
  });
  const legend = leaders.map((l) =>
    `<span class="key"><i style="background:${colour(l)}"></i>${esc(l)}</span>`
  ).join(" ");
  const start = now - from >= 24 * 3600 * 1000 - 1000
    ? "24 h ago"
    : time(new Date(from).toISOString());
  return `<div class="timeline"><svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" ` +
    `role="img" aria-label="leases of the last 24 hours">` +
    `<rect x="0" y="3" width="${w}" height="${h - 6}" fill="#edf2f7"/>${bars}</svg>` +
    `<div class="axis"><span>${start}</span><span>now</span></div>` +
    (legend ? `<div class="legend">${legend}</div>` : "") +
    (c.timelineTruncated ? `<p class="muted">Only the newest leases are drawn.</p>` : "") +
    `</div>`;
}

function reasons(dropped: Record<string, number>): string {
  const entries = Object.entries(dropped).filter(([, n]) => n > 0);
  if (entries.length === 0) return "none";
  return entries.map(([r, n]) => `${esc(r || "(no reason)")} ${num(n)}`).join(", ");
}

function cluster(c: ClusterStatus, r: StatusReport, now: number): string {
  const silent = c.lastHeardSecondsAgo > r.ha.failoverTimeoutSeconds;
  return `<section class="cluster"><h3>${esc(c.cluster)}</h3><dl>` +
    `<dt>Leader</dt><dd><b>${esc(c.leader)}</b></dd>` +
    `<dt>Lease</dt><dd>${time(c.leaseStart)} → ${time(c.leaseUntil)}</dd>` +
    `<dt>Last heard</dt><dd class="${silent ? "bad" : ""}">${duration(c.lastHeardSecondsAgo)} ago${
      silent ? " (past the failover timeout)" : ""
    }</dd>` +
    `<dt>Leader changes, 24 h</dt><dd>${num(c.leaderChanges24h)}</dd>` +
    `<dt>Samples</dt><dd>accepted ${num(c.samples.accepted)}, staged ${
      num(c.samples.staged)
    }; dropped: ${reasons(c.samples.dropped)}</dd>` +
    `</dl>${timeline(c, now)}</section>`;
}

const STYLE = `
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1a202c;background:#f7fafc}
main{max-width:60rem;margin:0 auto;padding:.75rem}
h1{font-size:1.3rem;margin:.3rem 0}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}h3{font-size:1rem;margin:0 0 .3rem;word-break:break-all}
section.box,section.cluster{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:.6rem .8rem;margin:.5rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .8rem;margin:0}dt{color:#4a5568}dd{margin:0;word-break:break-word}
.muted{color:#718096}.bad{color:#c53030;font-weight:600}.ok{color:#2f855a;font-weight:600}
.sparks{display:flex;flex-wrap:wrap;gap:.8rem}.spark{margin:0;flex:1 1 16rem}.spark svg{width:100%;height:40px;background:#fff;border:1px solid #e2e8f0}
.timeline svg{width:100%;height:22px;display:block;margin-top:.4rem}.axis{display:flex;justify-content:space-between;font-size:.75rem;color:#718096}
.legend{font-size:.85rem}.key{margin-right:.8rem;word-break:break-all}.key i{display:inline-block;width:.7rem;height:.7rem;margin-right:.25rem;border-radius:2px}
@media (max-width:30rem){dl{grid-template-columns:1fr}dt{margin-top:.3rem}}
`;

/** The whole page. */
export function renderStatusPage(r: StatusReport): string {
  const now = Date.parse(r.generatedAt);
  const db = r.database;
  const dbState = db.reachable
    ? `<span class="ok">reachable</span>`
    : `<span class="bad">not reachable</span>${db.error ? `: ${esc(db.error)}` : ""}`;
  let clusters: string;
  if (!r.ha.enabled) {
    clusters = `<p class="muted">High availability is off (--metrics.high-availability).</p>`;
  } else if (r.clusters.length === 0) {
    clusters = `<p class="muted">No cluster has written yet.</p>`;
  } else {
    clusters = r.clusters.map((c) => cluster(c, r, now)).join("");
    if (r.clustersTruncated) {
      clusters += `<p class="bad">Showing the first ${r.clusters.length} of ${
        num(r.clustersTotal)
      } clusters (by name); the JSON at /api/v1/status/ha is limited alike.</p>`;
    }
  }
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>promscale status</title><style>${STYLE}</style></head>
<body><main>
<h1>promscale ${esc(r.version)}</h1>
<p class="muted">commit ${esc(r.commit)}, deno ${esc(r.deno)}; up ${
    duration(r.uptimeSeconds)
  } (since ${time(r.startedAt)}); page made ${time(r.generatedAt)}</p>
<h2>Database</h2>
<section class="box"><dl>
<dt>Database</dt><dd>${esc(db.uri)}</dd>
<dt>State</dt><dd>${dbState}</dd>
<dt>Schema version</dt><dd>${num(db.schemaVersion)}</dd>
<dt>Pool</dt><dd>${num(db.pool.inUse)} of ${num(db.pool.max)} connections in use, ${
    num(db.pool.waiting)
  } writes waiting</dd>
</dl></section>
<h2>This connector</h2>
<section class="box"><div class="sparks">
${sparkline("Samples stored", r.rates, (p) => p.ingest)}
${sparkline("Writes answered 503", r.rates, (p) => p.unavailable)}
</div><dl>
<dt>Samples stored</dt><dd>${num(r.samples.stored)}</dd>
<dt>Dropped</dt><dd>${reasons(r.samples.dropped)}</dd>
</dl></section>
<h2>HA clusters${r.ha.enabled ? ` (${num(r.clustersTotal)})` : ""}</h2>
${clusters}
<p class="muted">Leases and leaders come from the database (all connectors); sample counts are
this connector's since it started. JSON: <a href="api/v1/status/ha">/api/v1/status/ha</a>.</p>
</main></body></html>
`;
}
