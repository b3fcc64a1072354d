/** RecentLeaderSamples: recognising followers' copies of leader samples without the database. */
import { assert, assertEquals } from "../helpers/assert.ts";
import { RecentLeaderSamples } from "../../src/ha/recent.ts";

Deno.test("RecentLeaderSamples recognises a copy within half the interval the leader's spacings agree on", () => {
  const r = new RecentLeaderSamples();
  r.note("s", [1000, 2000]);
  r.note("s", [3000]);
  assert(r.isCopy("s", 2400), "0.4 of an interval from 2000");
  assert(r.isCopy("s", 3499), "just inside half an interval after the newest");
  assert(!r.isCopy("s", 3500), "half an interval is not a copy");
  assert(!r.isCopy("t", 2000), "another series");
});

Deno.test("RecentLeaderSamples calls nothing a copy until two spacings agree", () => {
  const r = new RecentLeaderSamples();
  r.note("s", [1000, 2000]);
  assert(!r.isCopy("s", 2000), "one spacing is no interval");
  r.note("s", [4000]);
  assert(!r.isCopy("s", 4000), "1000 and 2000 do not agree");
  r.note("s", [5000]);
  assert(r.isCopy("s", 4100));
});

Deno.test("RecentLeaderSamples leaves a gap of the leader to the reconciler", () => {
  const r = new RecentLeaderSamples();
  r.note("s", [1000, 2000, 3000, 5000]);
  assert(!r.isCopy("s", 4300), "the leader missed round 4000: a fill, not a copy");
  assert(r.isCopy("s", 5300));
});

Deno.test("RecentLeaderSamples keeps the newest four, in order, without doubles, and is bounded", () => {
  const r = new RecentLeaderSamples(2);
  r.note("s", [3000, 1000, 2000, 2000, 4000, 5000]);
  assert(!r.isCopy("s", 1000), "the oldest is forgotten");
  assert(r.isCopy("s", 2100) && r.isCopy("s", 5100));
  r.note("s", [4500]); // out of order: kept in place
  r.note("a", [1]);
  r.note("b", [1]);
  assertEquals(r.size, 2, "at most max series");
  assert(!r.isCopy("s", 5000), "the first series noted is forgotten first");
});
