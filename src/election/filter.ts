/**
 * The ingest filter of the legacy advisory-lock election: every request
 * tells the election that the local Prometheus is alive; the leader stores
 * everything, a follower answers 2xx and drops (counted with a reason), and
 * while the outcome is open (new leader in its grace period, lost
 * connection, database unreachable) the answer is 503, so Prometheus keeps
 * the samples and sends them again rather than losing them.
 */
import { UnavailableError } from "../errors.ts";
import type { DecodedWrite, FilterResult, IngestFilter } from "../ingest.ts";
import type { ConnectorMetrics } from "../telemetry/metrics.ts";
import type { AdvisoryLockElection } from "./advisory_lock.ts";

/** How long a request waits for an election round when the outcome is not known. */
const SETTLE_WAIT_MS = 2_000;

/** Reason label of samples dropped because another connector holds the lock. */
export const NOT_ELECTED = "not_elected";

/** Filters writes by the outcome of the advisory-lock election. */
export class ElectionFilter implements IngestFilter {
  constructor(
    readonly election: AdvisoryLockElection,
    readonly metrics: ConnectorMetrics,
    readonly settleWaitMs = SETTLE_WAIT_MS,
  ) {}

  async apply(decoded: DecodedWrite): Promise<FilterResult> {
    const e = this.election;
    e.heard();
    let d = e.decision();
    if (d.kind === "unknown") {
      await e.settled(this.settleWaitMs);
      d = e.decision();
    }
    switch (d.kind) {
      case "leader": {
        const epoch = d.epoch;
        return {
          series: decoded.series,
          guard: () => {
            if (!e.stillLeader(epoch)) {
              throw new UnavailableError(
                `Leader election: leadership of advisory lock ${e.lockId} lost before writing; retry`,
              );
            }
          },
        };
      }
      case "follower": {
        let samples = 0;
        for (const s of decoded.series) samples += s.timestamps.length;
        if (samples) this.metrics.samplesDropped.inc({ cluster: "", reason: NOT_ELECTED }, samples);
        return { series: [] };
      }
      case "starting":
        throw new UnavailableError(
          `Leader election: advisory lock ${e.lockId} held, writing starts in ${d.waitMs} ms; retry`,
        );
      case "unconfirmed":
        throw new UnavailableError(
          `Leader election: advisory lock ${e.lockId} not confirmed lately; retry`,
        );
      case "unknown":
        throw new UnavailableError(
          `Leader election: not known yet whether this connector holds advisory lock ${e.lockId}; retry`,
        );
    }
  }
}
