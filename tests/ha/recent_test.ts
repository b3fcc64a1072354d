/** RecentLeaderSamples: recognising followers' copies of leader samples without the database. */
import { assert, assertEquals } from "../helpers/assert.ts";
import { RecentLeaderSamples } from "../../src/ha/recent.ts";

Deno.test("RecentLeaderSamples recognises a copy within half the interval the leader's spacings agree on", () => {
  const r = new RecentLeaderSamples();
  r.note(1, [1000, 2000]);
  r.note(1, [3000]);
  assert(r.isCopy(1, 2400), "0.4 of an interval from 2000");
  assert(r.isCopy(1, 3499), "just inside half an interval after the newest");
  assert(!r.isCopy(1, 3500), "half an interval is not a copy");
  assert(!r.isCopy(2, 2000), "another series");
});

Deno.test("RecentLeaderSamples calls nothing a copy until two spacings agree", () => {
  const r = new RecentLeaderSamples();
  r.note(1, [1000, 2000]);
  assert(!r.isCopy(1, 2000), "one spacing is no interval");
  r.note(1, [4000]);
  assert(!r.isCopy(1, 4000), "1000 and 2000 do not agree");
  r.note(1, [5000]);
  assert(r.isCopy(1, 4100));
});

Deno.test("RecentLeaderSamples leaves a gap of the leader to the reconciler", () => {
  const r = new RecentLeaderSamples();
  r.note(1, [1000, 2000, 3000, 5000]);
  assert(!r.isCopy(1, 4300), "the leader missed round 4000: a fill, not a copy");
  assert(r.isCopy(1, 5300));
});

Deno.test("RecentLeaderSamples keeps the newest four, in order, without doubles, and is bounded", () => {
  const r = new RecentLeaderSamples(2);
  r.note(1, [3000, 1000, 2000, 2000, 4000, 5000]);
  assert(!r.isCopy(1, 1000), "the oldest is forgotten");
  assert(r.isCopy(1, 2100) && r.isCopy(1, 5100));
  r.note(1, [4500]); // out of order: kept in place
  r.note(3, [1]);
  r.note(4, [1]);
  assertEquals(r.size, 2, "at most max series");
  assert(!r.isCopy(1, 5000), "the first series noted is forgotten first");
});
