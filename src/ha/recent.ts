/**
 * The leader's newest committed samples per series, as this connector wrote
 * them: enough to recognise a follower's sample as a copy of a stored round
 * without the database (staging and reconciling it costs PostgreSQL about
 * ten times what storing it does, bench/RESULTS.md). A follower sample is
 * a copy when one of the last few leader samples of its series, committed
 * through this connector, lies within half the series' interval of it,
 * the interval being a spacing that two of those samples' spacings agree
 * on. Anything else is staged and reconciled as before, so this only saves
 * work: with several connectors behind a load balancer, each recognises
 * the copies of the leader requests it wrote itself.
 *
 * Safe to drop: the leader's sample is committed. A takeover later moves
 * it back to the stage, where nothing within half an interval covers it
 * (this copy was never stored), so it is kept.
 */

/** Leader samples remembered per series. */
const KEPT = 4;

/** See the module comment. */
export class RecentLeaderSamples {
  readonly #rings = new Map<number, Float64Array>();
  readonly #intervals = new Map<number, number>();

  /** `max`: series remembered at most (the oldest noted are forgotten first). */
  constructor(readonly max = 100_000) {}

  /** Series remembered. */
  get size(): number {
    return this.#rings.size;
  }

  /** Sets measured series intervals (ms) by series id; see the module comment. */
  setIntervals(intervals: Iterable<[number, number]>): void {
    for (const [key, ms] of intervals) {
      if (!(ms > 0)) continue;
      this.#intervals.delete(key);
      if (this.#intervals.size >= this.max) {
        const oldest = this.#intervals.keys().next().value;
        if (oldest !== undefined) this.#intervals.delete(oldest);
      }
      this.#intervals.set(key, ms);
    }
  }

  /** Notes leader samples of series `key` (its id) that are committed. */
  note(key: number, times: ArrayLike<number>): void {
    let ring = this.#rings.get(key);
    if (!ring) {
      if (this.#rings.size >= this.max) {
        const oldest = this.#rings.keys().next().value;
        if (oldest !== undefined) this.#rings.delete(oldest);
      }
      ring = new Float64Array(KEPT).fill(NaN);
      this.#rings.set(key, ring);
    }
    // Ascending, newest last, empty slots (NaN) first.
    const kept: number[] = [];
    for (let k = 0; k < KEPT; k++) if (!Number.isNaN(ring[k])) kept.push(ring[k]);
    const newest = kept.length ? kept[kept.length - 1] : -Infinity;
    let sorted = true;
    for (let i = 0; i < times.length; i++) {
      if (!(times[i] > (i ? times[i - 1] : newest))) sorted = false;
      kept.push(times[i]);
    }
    if (!sorted) kept.sort((x, y) => x - y);
    let n = 0;
    for (let i = kept.length - 1; i >= 0 && n < KEPT; i--) {
      if (n && kept[i] === ring[KEPT - n]) continue; // a time noted twice
      ring[KEPT - 1 - n++] = kept[i];
    }
    for (let k = 0; k < KEPT - n; k++) ring[k] = NaN;
  }

  /** True when `t` is a copy of a leader sample of series `key` noted here. */
  isCopy(key: number, t: number): boolean {
    const ring = this.#rings.get(key);
    const measured = this.#intervals.get(key);
    if (!ring || measured === undefined) return false;
    const agreed = agreedSpacing(ring);
    const interval = agreed > 0 ? Math.min(measured, agreed) : measured;
    for (let k = 0; k < KEPT; k++) {
      if (Math.abs(ring[k] - t) < interval / 2) return true;
    }
    return false;
  }
}

/** A spacing of the ring that another spacing agrees with (within 10 %), else NaN. */
function agreedSpacing(ring: Float64Array): number {
  const sp: number[] = [];
  for (let k = 1; k < ring.length; k++) {
    const d = ring[k] - ring[k - 1];
    if (d > 0) sp.push(d);
  }
  let best = NaN;
  for (let i = 0; i < sp.length; i++) {
    for (let j = 0; j < sp.length; j++) {
      if (i !== j && Math.abs(sp[i] - sp[j]) <= sp[i] / 10) {
        if (!(sp[i] >= best)) best = sp[i];
      }
    }
  }
  return best;
}
