/**
 * Per-series judging of what a HA pair of Prometheus replicas scraped
 * against what the connectors stored (docs/architecture.md, "High
 * availability", invariant 2). Pure functions on millisecond timestamps, so the rules can
 * be tested on synthetic times (series_judge_test.ts).
 *
 * Each series is judged on its own, with its own scrape interval `I`, within
 * a window of sample time:
 *
 * - **lost**: the replicas' scraped samples (the union of every replica's
 *   TSDB) are grouped into rounds (see `groupRounds`). Between two
 *   consecutive stored samples more than 1.5 I apart, every round with a
 *   scraped sample in the window that is not within I/2 of either stored
 *   sample is lost. So is every such round before the first stored sample
 *   and after the last one (or every round, if nothing is stored).
 * - **doubled**: two consecutive stored samples closer than I/2, one of them
 *   in the window, unless one replica itself scraped both (Prometheus
 *   catching up a missed tick after a SIGSTOP does that): those are counted
 *   apart as `doubledExcused`. Stored samples are the replicas' own
 *   timestamps, so "a replica scraped it" is an exact match.
 */

/** One series' data for `judgeSeries`. */
export interface SeriesInput {
  /** The series' labels (or any name), for reports. */
  key: string;
  /** Its scrape interval, ms. */
  intervalMs: number;
  /** Stored sample times, ms, any order. */
  stored: number[];
  /** Replica name → the times it scraped (its TSDB), ms, any order. */
  scraped: Record<string, number[]>;
  /** Judged sample time, ms, both ends included. */
  window: { from: number; to: number };
}

/** A stretch without stored samples in which replicas had rounds. */
export interface LostStretch {
  /** Stored sample before the stretch (null: before the first). */
  after: number | null;
  /** Stored sample after the stretch (null: after the last). */
  before: number | null;
  /** Rounds lost in it. */
  rounds: number;
  /** First scraped time of each lost round. */
  at: number[];
}

/** The verdict on one series. */
export interface SeriesVerdict {
  key: string;
  intervalMs: number;
  window: { from: number; to: number };
  /** Stored samples in the window. */
  stored: number;
  /** Rounds some replica scraped in the window. */
  scrapedRounds: number;
  /** Scraped rounds not stored (see module doc). */
  lost: number;
  /** Consecutive stored samples closer than I/2 not both scraped by one replica. */
  doubled: number;
  /** Consecutive stored samples closer than I/2 that one replica scraped both of. */
  doubledExcused: number;
  /** Stored samples in the window that no replica's TSDB has (information only). */
  unattributed: number;
  /** Stored samples in the window per replica that scraped them (exact time match). */
  storedFrom: Record<string, number>;
  lostStretches: LostStretch[];
  /** The doubled pairs [earlier, later] (not the excused ones). */
  doubledPairs: [number, number][];
  /** Longest gap between consecutive stored samples touching the window, ms. */
  longestGapMs: number;
}

/**
 * Groups sorted-or-not times into scrape rounds: a round starts at the
 * earliest time not yet grouped and takes every time less than 3/4 I after
 * it. Two replicas scrape each round once, at their own phase, so a round
 * holds one or two times; when the phases are more than 3/4 I apart the
 * count can be one too high (never too low while a replica scrapes on
 * schedule). Returns the rounds, each sorted, in time order.
 */
export function groupRounds(times: number[], intervalMs: number): number[][] {
  const sorted = [...times].sort((a, b) => a - b);
  const rounds: number[][] = [];
  let cur: number[] = [];
  for (const t of sorted) {
    if (cur.length > 0 && t - cur[0] < 0.75 * intervalMs) {
      if (cur[cur.length - 1] !== t) cur.push(t);
    } else {
      if (cur.length > 0) rounds.push(cur);
      cur = [t];
    }
  }
  if (cur.length > 0) rounds.push(cur);
  return rounds;
}

/** Judges one series (see the module doc). */
export function judgeSeries(input: SeriesInput): SeriesVerdict {
  const I = input.intervalMs;
  const half = I / 2;
  const { from, to } = input.window;
  const inWindow = (t: number) => t >= from && t <= to;
  const stored = [...new Set(input.stored)].sort((a, b) => a - b);
  const bySet = Object.entries(input.scraped).map(([r, ts]) => [r, new Set(ts)] as const);
  const scrapedInWindow = Object.values(input.scraped).flat().filter(inWindow);

  // Lost: the stretches between stored samples (and before the first and
  // after the last) that are long enough, and the rounds scraped in them.
  const stretches: { after: number | null; before: number | null }[] = [];
  if (stored.length === 0) stretches.push({ after: null, before: null });
  else {
    stretches.push({ after: null, before: stored[0] });
    for (let i = 1; i < stored.length; i++) {
      if (stored[i] - stored[i - 1] > 1.5 * I) {
        stretches.push({ after: stored[i - 1], before: stored[i] });
      }
    }
    stretches.push({ after: stored[stored.length - 1], before: null });
  }
  const lostStretches: LostStretch[] = [];
  for (const s of stretches) {
    const lo = s.after === null ? -Infinity : s.after + half;
    const hi = s.before === null ? Infinity : s.before - half;
    const inside = scrapedInWindow.filter((t) => t >= lo && t <= hi);
    if (inside.length === 0) continue;
    const rounds = groupRounds(inside, I);
    lostStretches.push({ ...s, rounds: rounds.length, at: rounds.map((r) => r[0]) });
  }

  // Doubled: consecutive stored samples too close, one of them in the window.
  let doubled = 0, doubledExcused = 0, longestGapMs = 0;
  const doubledPairs: [number, number][] = [];
  for (let i = 1; i < stored.length; i++) {
    const a = stored[i - 1], b = stored[i];
    if (!inWindow(a) && !inWindow(b)) continue;
    longestGapMs = Math.max(longestGapMs, b - a);
    if (b - a >= half) continue;
    if (bySet.some(([, set]) => set.has(a) && set.has(b))) doubledExcused++;
    else {
      doubled++;
      doubledPairs.push([a, b]);
    }
  }

  const storedIn = stored.filter(inWindow);
  const storedFrom: Record<string, number> = {};
  let unattributed = 0;
  for (const t of storedIn) {
    let found = false;
    for (const [r, set] of bySet) {
      if (set.has(t)) {
        storedFrom[r] = (storedFrom[r] ?? 0) + 1;
        found = true;
      }
    }
    if (!found) unattributed++;
  }

  return {
    key: input.key,
    intervalMs: I,
    window: { from, to },
    stored: storedIn.length,
    scrapedRounds: groupRounds(scrapedInWindow, I).length,
    lost: lostStretches.reduce((n, s) => n + s.rounds, 0),
    doubled,
    doubledExcused,
    unattributed,
    storedFrom,
    lostStretches,
    doubledPairs,
    longestGapMs,
  };
}

/** Totals over the verdicts of several series. */
export interface JudgeSummary {
  series: number;
  stored: number;
  scrapedRounds: number;
  lost: number;
  doubled: number;
  doubledExcused: number;
  unattributed: number;
  /** Series with a lost or doubled round. */
  failing: number;
}

/** Adds up verdicts. */
export function summarize(verdicts: SeriesVerdict[]): JudgeSummary {
  const sum: JudgeSummary = {
    series: verdicts.length,
    stored: 0,
    scrapedRounds: 0,
    lost: 0,
    doubled: 0,
    doubledExcused: 0,
    unattributed: 0,
    failing: 0,
  };
  for (const v of verdicts) {
    sum.stored += v.stored;
    sum.scrapedRounds += v.scrapedRounds;
    sum.lost += v.lost;
    sum.doubled += v.doubled;
    sum.doubledExcused += v.doubledExcused;
    sum.unattributed += v.unattributed;
    if (v.lost > 0 || v.doubled > 0) sum.failing++;
  }
  return sum;
}

/**
 * The key a series is matched by between the replicas' TSDBs and the
 * database: its labels without `__name__` and the given external labels
 * (`cluster`, `__replica__`), sorted, as JSON.
 */
export function seriesKey(labels: Record<string, string>, drop: string[] = []): string {
  const skip = new Set(["__name__", ...drop]);
  return JSON.stringify(
    Object.fromEntries(
      Object.entries(labels).filter(([k]) => !skip.has(k)).sort(([a], [b]) =>
        a < b ? -1 : a > b ? 1 : 0
      ),
    ),
  );
}
