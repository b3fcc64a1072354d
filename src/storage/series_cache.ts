/**
 * Bounded in-memory map from a series' canonical label key to its id, so
 * the hot path never asks the database about a known series. Eviction is
 * "oldest inserted first" in batches (a Map keeps insertion order), which
 * costs nothing per hit; a hit refreshes nothing, and a series evicted
 * while still in use is simply looked up again once.
 */
export class SeriesCache {
  #map = new Map<string, number>();

  constructor(readonly maxSize: number) {}

  get size(): number {
    return this.#map.size;
  }

  get(key: string): number | undefined {
    return this.#map.get(key);
  }

  set(key: string, id: number): void {
    if (this.#map.size >= this.maxSize && !this.#map.has(key)) {
      // Evict the oldest tenth at once so eviction is amortised.
      let n = Math.max(1, Math.floor(this.maxSize / 10));
      for (const k of this.#map.keys()) {
        this.#map.delete(k);
        if (--n === 0) break;
      }
    }
    this.#map.set(key, id);
  }

  clear(): void {
    this.#map.clear();
  }
}
