/**
 * The per-series judging rules of series_judge.ts on synthetic times.
 */
import { assertEquals } from "../helpers/assert.ts";
import { groupRounds, judgeSeries, seriesKey, summarize } from "./series_judge.ts";

/** `n` times from `start` every `step` ms. */
const every = (start: number, step: number, n: number) =>
  Array.from({ length: n }, (_, i) => start + i * step);

const W = { from: 0, to: 20_000 };

Deno.test("series judge: two replicas, the leader's samples all stored — nothing lost or doubled", () => {
  const r1 = every(100, 1000, 21); // 100 … 20100
  const r2 = every(600, 1000, 20);
  const v = judgeSeries({
    key: "s",
    intervalMs: 1000,
    stored: r1,
    scraped: { r1, r2 },
    window: { from: 1000, to: 19_000 },
  });
  assertEquals([v.lost, v.doubled, v.doubledExcused, v.unattributed], [0, 0, 0, 0]);
  assertEquals(v.stored, 18);
  assertEquals(v.storedFrom, { r1: 18 });
  assertEquals(v.scrapedRounds, 18);
  assertEquals(v.longestGapMs, 1000);
});

Deno.test("series judge: a gap the follower scraped is lost, round by round", () => {
  const r1 = every(100, 1000, 21);
  const r2 = every(600, 1000, 20);
  // The leader's 5100…8100 are missing; the follower had 4600…8600.
  const stored = r1.filter((t) => t < 5000 || t > 9000);
  const v = judgeSeries({ key: "s", intervalMs: 1000, stored, scraped: { r1, r2 }, window: W });
  // Scraped in [4100 + 500, 9100 - 500], grouped into rounds: 4600+5100,
  // 5600+6100, 6600+7100, 7600+8100, 8600 — the follower's five rounds.
  assertEquals(v.lost, 5);
  assertEquals(v.lostStretches, [{
    after: 4100,
    before: 9100,
    rounds: 5,
    at: [4600, 5600, 6600, 7600, 8600],
  }]);
  assertEquals(v.doubled, 0);
});

Deno.test("series judge: a gap nobody scraped is not lost; a gap of 1.5 intervals or less is not judged", () => {
  const r1 = every(100, 1000, 21).filter((t) => t < 5000 || t > 9000);
  const stored = r1.filter((t) => t !== 12_100);
  // 11100 → 13100 is 2 s, but nobody else scraped in it → lost only r1's round 12100.
  let v = judgeSeries({ key: "s", intervalMs: 1000, stored, scraped: { r1 }, window: W });
  assertEquals(v.lost, 1);
  assertEquals(v.lostStretches[0].at, [12_100]);
  // Stored 1400 ms apart, with a replica's sample in the middle: not a gap.
  v = judgeSeries({
    key: "s",
    intervalMs: 1000,
    stored: [1000, 2400, 3400],
    scraped: { r1: [1000, 2400, 3400], r2: [1700] },
    window: { from: 1000, to: 3400 },
  });
  assertEquals([v.lost, v.doubled], [0, 0]);
});

Deno.test("series judge: rounds before the first and after the last stored sample are lost, within the window only", () => {
  const r1 = every(0, 5000, 10); // 0 … 45000, 5 s job
  const stored = r1.filter((t) => t >= 15_000 && t <= 30_000);
  const v = judgeSeries({
    key: "slow",
    intervalMs: 5000,
    stored,
    scraped: { r1 },
    window: { from: 5000, to: 40_000 },
  });
  // Before: 5000, 10000 (0 is outside the window); after: 35000, 40000 (45000 outside).
  assertEquals(v.lost, 4);
  assertEquals(v.lostStretches.map((s) => [s.after, s.before, s.at]), [
    [null, 15_000, [5000, 10_000]],
    [30_000, null, [35_000, 40_000]],
  ]);
  // Nothing stored at all: every round in the window is lost.
  const none = judgeSeries({
    key: "slow",
    intervalMs: 5000,
    stored: [],
    scraped: { r1 },
    window: { from: 5000, to: 40_000 },
  });
  assertEquals(none.lost, 8);
  assertEquals(none.stored, 0);
});

Deno.test("series judge: two replicas' samples of one round stored are doubled; one replica's own close pair is excused", () => {
  const r1 = every(100, 1000, 10);
  const r2 = every(400, 1000, 10);
  // Round 3100 stored from both replicas (3100 and 3400).
  const stored = [...r1, 3400];
  let v = judgeSeries({
    key: "s",
    intervalMs: 1000,
    stored,
    scraped: { r1, r2 },
    window: { from: 0, to: 10_000 },
  });
  assertEquals(v.doubled, 1);
  assertEquals(v.doubledPairs, [[3100, 3400]]);
  assertEquals(v.storedFrom, { r1: 10, r2: 1 });
  // r1 resumed from a pause: it scraped 5350 (the missed tick) and 5100+… on schedule.
  const resumed = [...r1, 5350].sort((a, b) => a - b);
  v = judgeSeries({
    key: "s",
    intervalMs: 1000,
    stored: resumed,
    scraped: { r1: resumed, r2 },
    window: { from: 0, to: 10_000 },
  });
  assertEquals([v.doubled, v.doubledExcused], [0, 1]);
  // A stored sample no replica has is counted, not judged.
  v = judgeSeries({
    key: "s",
    intervalMs: 1000,
    stored: [...r1, 20_000],
    scraped: { r1, r2 },
    window: { from: 0, to: 30_000 },
  });
  assertEquals(v.unattributed, 1);
});

Deno.test("series judge: doubles outside the window are not counted", () => {
  const v = judgeSeries({
    key: "s",
    intervalMs: 1000,
    stored: [100, 300, 1100, 2100, 3100, 3300],
    scraped: { r1: [100, 1100, 2100, 3100], r2: [300, 3300] },
    window: { from: 1000, to: 3000 },
  });
  assertEquals([v.doubled, v.lost, v.stored], [0, 0, 2]);
});

Deno.test("groupRounds() puts two replicas' samples of a round together", () => {
  assertEquals(groupRounds([1600, 100, 600, 1100, 2100], 1000), [
    [100, 600],
    [1100, 1600],
    [2100],
  ]);
  // Phases 900 ms apart: at most one round too many, never too few.
  const r1 = every(0, 1000, 5), r2 = every(900, 1000, 5);
  const n = groupRounds([...r1, ...r2], 1000).length;
  assertEquals(n >= 5 && n <= 6, true);
  // One replica's scrapes late by a little are still their own rounds.
  assertEquals(groupRounds([0, 980, 2010, 2990], 1000).length, 4);
  assertEquals(groupRounds([], 1000), []);
});

Deno.test("summarize() adds up and counts failing series; seriesKey() ignores name and external labels", () => {
  const ok = judgeSeries({
    key: "a",
    intervalMs: 1000,
    stored: [0, 1000, 2000],
    scraped: { r1: [0, 1000, 2000] },
    window: { from: 0, to: 2000 },
  });
  const bad = judgeSeries({
    key: "b",
    intervalMs: 1000,
    stored: [0, 2000],
    scraped: { r1: [0, 2000], r2: [1000] },
    window: { from: 0, to: 2000 },
  });
  assertEquals(summarize([ok, bad]), {
    series: 2,
    stored: 5,
    scrapedRounds: 6,
    lost: 1,
    doubled: 0,
    doubledExcused: 0,
    unattributed: 0,
    failing: 1,
  });
  assertEquals(
    seriesKey({ __name__: "up", job: "fast", instance: "x:1", cluster: "c1" }, ["cluster"]),
    seriesKey({ instance: "x:1", job: "fast" }),
  );
});
