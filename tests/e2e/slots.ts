/**
 * Scrape-slot accounting for end-to-end checks. Replicas of a HA pair
 * scrape on their own schedules (Prometheus offsets each replica's scrapes
 * differently), so a slot is judged by the spacing of consecutive stored
 * samples: a gap of about two intervals is one missed scrape, two samples
 * closer than half an interval are one scrape stored twice.
 */

/** What the samples of one series show. */
export interface SlotReport {
  samples: number;
  /** Scrapes missing between the first and last sample. */
  missed: number;
  /** Scrapes stored twice (two samples closer than half an interval). */
  doubled: number;
  /** Longest gap between consecutive samples, in ms. */
  longestGapMs: number;
}

/** Analyses sorted sample times (ms) of one series scraped every `intervalMs`. */
export function analyseSlots(times: number[], intervalMs: number): SlotReport {
  let missed = 0, doubled = 0, longest = 0;
  for (let i = 1; i < times.length; i++) {
    const gap = times[i] - times[i - 1];
    if (gap > longest) longest = gap;
    if (gap < intervalMs / 2) doubled++;
    else missed += Math.max(0, Math.round(gap / intervalMs) - 1);
  }
  return { samples: times.length, missed, doubled, longestGapMs: longest };
}

/**
 * Counts the missing slots between consecutive stored samples (sorted ms)
 * that some replica did scrape (`scraped`, ms, any order): the scrapes the
 * connector lost, as opposed to scrapes no replica made.
 */
export function lostSlots(stored: number[], scraped: number[], intervalMs: number): number {
  const sorted = [...scraped].sort((a, b) => a - b);
  let lost = 0;
  for (let i = 1; i < stored.length; i++) {
    const a = stored[i - 1], b = stored[i];
    const missing = Math.round((b - a) / intervalMs) - 1;
    for (let k = 1; k <= missing; k++) {
      const slot = a + k * intervalMs;
      if (sorted.some((t) => Math.abs(t - slot) < intervalMs / 2)) lost++;
    }
  }
  return lost;
}
