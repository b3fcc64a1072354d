import { assert, assertEquals } from "../helpers/assert.ts";
import { SeriesCache, type SeriesLabels } from "../../src/storage/series_cache.ts";

/** Builds a label set from pairs, with fresh string objects (as each request decodes anew). */
function labels(...pairs: string[]): SeriesLabels {
  const out = [];
  for (let i = 0; i < pairs.length; i += 2) {
    // Slicing from a longer string makes a new string object with the same text.
    out.push({ name: ("#" + pairs[i]).slice(1), value: ("#" + pairs[i + 1]).slice(1) });
  }
  return out;
}

Deno.test("SeriesCache returns the id of an equal label set and nothing for others", () => {
  const c = new SeriesCache(100);
  c.set(labels("__name__", "up", "job", "node"), 7);
  assertEquals(c.get(labels("__name__", "up", "job", "node")), 7);
  assertEquals(c.get(labels("__name__", "up", "job", "nodes")), undefined);
  assertEquals(c.get(labels("__name__", "up", "jab", "node")), undefined);
  assertEquals(c.get(labels("__name__", "up")), undefined);
  assertEquals(c.get(labels("__name__", "up", "job", "node", "x", "y")), undefined);
  // A name and a value swapped, or text moved across the boundary, is another set.
  c.set(labels("a", "bc"), 1);
  assertEquals(c.get(labels("ab", "c")), undefined);
  assertEquals(c.get(labels("bc", "a")), undefined);
  assertEquals(c.size, 2);
});

Deno.test("SeriesCache set replaces the id of a cached label set", () => {
  const c = new SeriesCache(100);
  c.set(labels("__name__", "up"), 1);
  c.set(labels("__name__", "up"), 2);
  assertEquals(c.get(labels("__name__", "up")), 2);
  assertEquals(c.size, 1);
});

Deno.test("SeriesCache keeps every id exact among many label sets (hash collisions included)", () => {
  const n = 120_000;
  const c = new SeriesCache(n);
  for (let i = 0; i < n; i++) {
    c.set(labels("__name__", `m${i % 97}`, "instance", `host-${i}`, "k", String(i % 13)), i + 1);
  }
  assertEquals(c.size, n);
  for (let i = 0; i < n; i++) {
    const id = c.get(
      labels("__name__", `m${i % 97}`, "instance", `host-${i}`, "k", String(i % 13)),
    );
    if (id !== i + 1) assertEquals(id, i + 1, `label set ${i}`);
  }
  assertEquals(c.get(labels("__name__", "m0", "instance", "host-0", "k", "1")), undefined);
});

Deno.test("SeriesCache evicts the oldest entries when full", () => {
  const c = new SeriesCache(100);
  for (let i = 0; i < 250; i++) c.set(labels("__name__", "up", "i", String(i)), i);
  assert(c.size <= 100, `size ${c.size}`);
  assertEquals(c.get(labels("__name__", "up", "i", "0")), undefined);
  assertEquals(c.get(labels("__name__", "up", "i", "249")), 249);
});

Deno.test("SeriesCache forgets everything when its string table is full, and never answers wrong", () => {
  const c = new SeriesCache(10);
  assertEquals(c.maxStrings, 1024);
  c.set(labels("__name__", "up", "job", "a"), 1);
  for (let i = 0; i < 2000; i++) {
    const l = labels("__name__", "up", "v", `value-${i}`);
    c.set(l, 1000 + i);
    assertEquals(c.get(l), 1000 + i);
    assert(c.strings <= c.maxStrings);
  }
  const first = c.get(labels("__name__", "up", "job", "a"));
  assert(first === undefined || first === 1, `got ${first}`);
  assertEquals(c.get(labels("__name__", "up", "v", "value-1999")), 2999);
  c.clear();
  assertEquals(c.size, 0);
  assertEquals(c.get(labels("__name__", "up", "v", "value-1999")), undefined);
});
