/**
 * Bounded in-memory map from a series' label set to its id, so the hot path
 * never asks the database about a known series.
 *
 * Looking a series up is the writer's most frequent operation (once per
 * series per request), so it builds no string: every label name and value
 * is mapped to a small integer code (an intern table, one Map lookup per
 * string; the decoder shares the string objects of repeated labels, whose
 * hashes V8 then computes only once), the label set becomes a sequence of
 * codes, and a 30-bit hash of that sequence finds a short chain of entries
 * whose codes are compared exactly. Codes are never reused for another
 * string, so equal code sequences mean equal label sets. Measured on the
 * benchmark's series: about half the cost of building a canonical key
 * string and looking it up (bench/RESULTS.md).
 *
 * Eviction is "oldest inserted first" in batches (a Map keeps insertion
 * order), which costs nothing per hit; a hit refreshes nothing, and a
 * series evicted while still in use is simply looked up again once. The
 * intern table holds at most `2 × maxSize` strings; when it is full,
 * everything is forgotten at once (as after a restart) and relearnt.
 */

/** A label set: sorted label pairs, `__name__` among them. */
export type SeriesLabels = readonly { name: string; value: string }[];

interface Entry {
  /** Codes of name, value, name, value, … */
  codes: number[];
  id: number;
  /** Next entry with the same hash. */
  next: Entry | undefined;
}

/** Codes stay small integers (V8 Smis); past this, everything is forgotten and codes restart. */
const MAX_CODE = 0x3fffffff;

/** Series id cache; see the module comment. */
export class SeriesCache {
  readonly maxStrings: number;
  #strings = new Map<string, number>();
  #nextCode = 1;
  #buckets = new Map<number, Entry>();
  #size = 0;
  /** Codes of the label set last hashed. */
  #codes: number[] = [];
  /** Bumped when everything is forgotten, so a half-coded label set is coded again. */
  #generation = 0;
  /** Lookups by `get()` (the writer's and the HA filter's), for /metrics. */
  queries = 0;
  /** Lookups by `get()` that found the series. */
  hits = 0;
  /** Entries dropped to make room (the oldest, or all when the intern table is full). */
  evictions = 0;

  constructor(readonly maxSize: number) {
    this.maxStrings = Math.max(1024, 2 * maxSize);
  }

  /** Series cached. */
  get size(): number {
    return this.#size;
  }

  /** Strings in the intern table. */
  get strings(): number {
    return this.#strings.size;
  }

  /** The id of a label set, if cached. */
  get(labels: SeriesLabels): number | undefined {
    this.queries++;
    const id = this.#find(labels);
    if (id !== undefined) this.hits++;
    return id;
  }

  #find(labels: SeriesLabels): number | undefined {
    const codes = this.#codes;
    let e = this.#buckets.get(this.#hash(labels));
    chain: for (; e !== undefined; e = e.next) {
      const c = e.codes;
      if (c.length !== codes.length) continue;
      for (let i = 0; i < c.length; i++) {
        if (c[i] !== codes[i]) continue chain;
      }
      return e.id;
    }
    return undefined;
  }

  /** Caches the id of a label set (replacing any id cached for it). */
  set(labels: SeriesLabels, id: number): void {
    if (this.#find(labels) !== undefined) {
      this.#remove(this.#hash(labels));
    }
    if (this.#size >= this.maxSize) this.#evict();
    const h = this.#hash(labels);
    this.#buckets.set(h, { codes: this.#codes.slice(), id, next: this.#buckets.get(h) });
    this.#size++;
  }

  /** Forgets everything. */
  clear(): void {
    this.#strings.clear();
    this.#buckets.clear();
    this.#size = 0;
    this.#generation++;
  }

  /** Forgets everything to make room: the entries count as evicted. */
  #forgetAll(): void {
    this.evictions += this.#size;
    this.clear();
  }

  /** Codes `labels` into #codes and returns their hash. */
  #hash(labels: SeriesLabels): number {
    const codes = this.#codes;
    for (;;) {
      const generation = this.#generation;
      codes.length = 2 * labels.length;
      let h = 0x811c9dc5 ^ labels.length;
      for (let i = 0; i < labels.length; i++) {
        const a = this.#code(labels[i].name);
        const b = this.#code(labels[i].value);
        codes[2 * i] = a;
        codes[2 * i + 1] = b;
        h = Math.imul(h ^ a, 0x01000193);
        h = Math.imul(h ^ b, 0x01000193);
      }
      // Coding a string may have forgotten everything: code them all anew.
      if (generation !== this.#generation) continue;
      h ^= h >>> 15;
      return h & 0x3fffffff;
    }
  }

  #code(s: string): number {
    let c = this.#strings.get(s);
    if (c === undefined) {
      if (this.#strings.size >= this.maxStrings) this.#forgetAll();
      if (this.#nextCode > MAX_CODE) {
        this.#forgetAll();
        this.#nextCode = 1;
      }
      c = this.#nextCode++;
      this.#strings.set(s, c);
    }
    return c;
  }

  /** Removes the entry whose codes are in #codes from bucket `h`. */
  #remove(h: number): void {
    const codes = this.#codes;
    let prev: Entry | undefined;
    for (let e = this.#buckets.get(h); e !== undefined; prev = e, e = e.next) {
      if (e.codes.length !== codes.length || e.codes.some((c, i) => c !== codes[i])) continue;
      if (prev) prev.next = e.next;
      else if (e.next) this.#buckets.set(h, e.next);
      else this.#buckets.delete(h);
      this.#size--;
      return;
    }
  }

  /** Evicts the oldest tenth (whole buckets) so eviction is amortised. */
  #evict(): void {
    let n = Math.max(1, Math.floor(this.maxSize / 10));
    for (const [h, head] of this.#buckets) {
      this.#buckets.delete(h);
      for (let e: Entry | undefined = head; e !== undefined; e = e.next) {
        this.#size--;
        this.evictions++;
        n--;
      }
      if (n <= 0) break;
    }
  }
}
