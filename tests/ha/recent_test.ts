/** RecentLeaderSamples: recognising followers' copies of leader samples without the database. */
import { assert, assertEquals } from "../helpers/assert.ts";
import { RecentLeaderSamples } from "../../src/ha/recent.ts";

Deno.test("RecentLeaderSamples recognises a copy within half the measured interval", () => {
  const r = new RecentLeaderSamples();
  r.setIntervals([[1, 1000], [2, 1000]]);
  r.note(1, [1000, 2000]);
  r.note(1, [3000]);
  assert(r.isCopy(1, 2400), "0.4 of an interval from 2000");
  assert(r.isCopy(1, 3499), "just inside half an interval after the newest");
  assert(!r.isCopy(1, 3500), "half an interval is not a copy");
  assert(!r.isCopy(2, 2000), "another series");
});

Deno.test("RecentLeaderSamples calls nothing a copy while the series' interval is not measured", () => {
  const r = new RecentLeaderSamples();
  r.note(1, [1000, 2000, 3000, 4000]);
  assert(!r.isCopy(1, 4000), "agreeing spacings are no measured interval");
  r.setIntervals([[1, 1000], [7, 0]]);
  assert(r.isCopy(1, 4000));
  r.note(7, [1000, 2000]);
  assert(!r.isCopy(7, 2000), "a zero interval is ignored");
});

Deno.test("RecentLeaderSamples: a connector that saw every third leader round calls no gap a copy", () => {
  // Behind a load balancer this connector wrote rounds 1600, 2200, 2800 of a
  // 200 ms series; the leader then paused. Its noted spacing (600 ms) is a
  // multiple of the interval: 3090 would look like a copy of 2800.
  const r = new RecentLeaderSamples();
  r.note(1, [1600, 2200, 2800]);
  r.setIntervals([[1, 200]]);
  assert(!r.isCopy(1, 3090), "290 ms after the leader's last round is a round it lacks");
  assert(r.isCopy(1, 2890), "90 ms after it is a copy");
});

Deno.test("RecentLeaderSamples uses the noted spacing when it is shorter than the measured interval", () => {
  const r = new RecentLeaderSamples();
  r.setIntervals([[1, 1000]]);
  // Catch-up scrapes after a pause: 300 ms apart, twice.
  r.note(1, [5000, 5300, 5600]);
  assert(!r.isCopy(1, 5990), "390 ms after 5600 is beyond half of 300 ms");
  assert(r.isCopy(1, 5700));
});

Deno.test("RecentLeaderSamples leaves a gap of the leader to the reconciler", () => {
  const r = new RecentLeaderSamples();
  r.setIntervals([[1, 1000]]);
  r.note(1, [1000, 2000, 3000, 5000]);
  assert(!r.isCopy(1, 4300), "the leader missed round 4000: a fill, not a copy");
  assert(r.isCopy(1, 5300));
});

Deno.test("RecentLeaderSamples keeps the newest four, in order, without doubles, and is bounded", () => {
  const r = new RecentLeaderSamples(2);
  r.setIntervals([[1, 1000]]);
  r.note(1, [3000, 1000, 2000, 2000, 4000, 5000]);
  assert(!r.isCopy(1, 1000), "the oldest is forgotten");
  assert(r.isCopy(1, 2100) && r.isCopy(1, 5100));
  r.note(1, [4500]); // out of order: kept in place
  r.note(3, [1]);
  r.note(4, [1]);
  assertEquals(r.size, 2, "at most max series");
  assert(!r.isCopy(1, 5000), "the first series noted is forgotten first");
});
