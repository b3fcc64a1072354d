/**
 * The remote-write HTTP handler: request → limits → decode → filter (HA or
 * legacy election) → write → status. Each stage is its own module; this one
 * only does the HTTP and the order of checks, which is part of the contract
 * (https://prometheus.io/docs/specs/remote_write_spec/):
 * 405 method, 415 encoding/type, 413 body size, 400 snappy/protobuf/labels,
 * 503 database, 204 after commit. Remote write 2.0
 * (https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/) goes the
 * same way, chosen by Content-Type (negotiate.ts), and its 204 carries the
 * `X-Prometheus-Remote-Write-*-Written` headers.
 */
import { readBody } from "../body.ts";
import { HttpError, toResponse } from "../errors.ts";
import type { DecodedWrite, IngestFilter, SampleWriter } from "../ingest.ts";
import { snappyDeclaredLength, uncompressSnappyBlock } from "../wire/snappy.ts";
import { type DecodeLimits, parseWriteRequest } from "./decode.ts";
import { parseWriteRequestV2, scanWriteRequestV2 } from "./decode_v2.ts";
import { negotiateWrite, type WriteProtocol, writtenHeaders } from "./negotiate.ts";
import {
  checkWriteCounts,
  estimateWriteCost,
  type MemoryBudget,
  type RequestLimits,
  type Reservation,
  scanWriteRequest,
} from "../limits.ts";

/** Limits and collaborators of the write handler. */
export interface WriteHandlerOptions {
  maxRequestBytes: number;
  maxDecodedBytes: number;
  readTimeoutMs: number;
  filter: IngestFilter;
  writer: SampleWriter;
  /** Called after a successful write, for metrics. */
  onWritten?: (samples: number, newSeries: number, deduplicated: boolean) => void;
  /**
   * Called after a successful write with the protocol and what besides float
   * samples was written (histograms, exemplars, metadata entries), for metrics.
   */
  onModelWritten?: (
    protocol: WriteProtocol,
    counts: { histograms: number; exemplars: number; metadata: number },
  ) => void;
  /**
   * --metrics.async-acks: answer 204 once the request is decoded and
   * filtered, and write in the background (a failure is then lost, and only
   * logged). At most `maxAsyncWrites` writes run in the background; beyond
   * that a request is written before it is answered, which bounds memory.
   */
  asyncAcks?: boolean;
  maxAsyncWrites?: number;
  /** Called when a background write fails. */
  onAsyncError?: (err: unknown) => void;
  /** Most series and labels per request (413 beyond); none: no such limit. */
  limits?: RequestLimits;
  /**
   * The estimated memory all requests in flight may hold together (503
   * when a request does not fit now, 413 when it never could); none: no
   * such limit. See src/limits.ts.
   */
  budget?: MemoryBudget;
}

/** Builds the handler for `POST /write` and `/api/v1/write`. */
export function writeHandler(o: WriteHandlerOptions): (req: Request) => Promise<Response> {
  let background = 0;
  return async (req) => {
    const reservation = o.budget?.reservation();
    // With asynchronous acks the memory stays reserved until the write ends.
    let releaseLater = false;
    try {
      if (req.method !== "POST") {
        return toResponse(
          new HttpError(405, `Method ${req.method} not allowed: remote write takes POST`),
          { allow: "POST" },
        );
      }
      // 1.0 or 2.0 by Content-Type; 415 for any other message or encoding.
      const protocol = negotiateWrite(req.headers);
      const body = await readBody(
        req,
        o.maxRequestBytes,
        o.readTimeoutMs,
        reservation && ((n) => reservation.reserve(n, "the request body")),
      );
      const decoded = decodeWithin(
        body,
        { maxDecodedBytes: o.maxDecodedBytes },
        o,
        reservation,
        protocol,
      );
      const kept = await o.filter.apply(decoded);
      const write = async () => {
        const result = await o.writer.write(kept.series, {
          guard: kept.guard,
          staged: kept.staged,
          fences: kept.fences,
          metadata: decoded.metadata,
        });
        kept.committed?.();
        o.onWritten?.(result.samples, result.newSeries, result.deduplicated);
        o.onModelWritten?.(protocol, {
          histograms: decoded.histograms ?? 0,
          exemplars: result.exemplars ?? 0,
          metadata: result.metadata ?? 0,
        });
      };
      if (o.asyncAcks && background < (o.maxAsyncWrites ?? 64)) {
        background++;
        releaseLater = true;
        write().catch((err) => o.onAsyncError?.(err)).finally(() => {
          background--;
          reservation?.release();
        });
      } else {
        await write();
      }
      // 2.0: what was written (accepted: stored, staged or deliberately
      // dropped as an HA copy), which a 2.0 sender requires.
      const headers = protocol === "2.0"
        ? writtenHeaders({
          samples: decoded.samples,
          histograms: decoded.histograms ?? 0,
          exemplars: decoded.exemplars ?? 0,
        })
        : undefined;
      return new Response(null, { status: 204, headers });
    } catch (err) {
      return toResponse(err);
    } finally {
      if (!releaseLater) reservation?.release();
    }
  };
}

/**
 * Decompresses and decodes a body within the request limits: the
 * decompressed size is reserved before it is allocated, and the series,
 * labels and samples are counted (without decoding them) and checked and
 * reserved before any series object is made.
 */
function decodeWithin(
  body: Uint8Array,
  decodeLimits: DecodeLimits,
  o: WriteHandlerOptions,
  reservation: Reservation | undefined,
  protocol: WriteProtocol,
): DecodedWrite {
  const declared = snappyDeclaredLength(body);
  if (reservation && declared !== null && declared <= decodeLimits.maxDecodedBytes) {
    reservation.reserve(declared, "the decompressed body");
  }
  const raw = uncompressSnappyBlock(body, decodeLimits.maxDecodedBytes, "write request");
  if (o.limits || reservation) {
    const counts = protocol === "2.0" ? scanWriteRequestV2(raw) : scanWriteRequest(raw);
    if (o.limits) checkWriteCounts(counts, o.limits);
    reservation?.reserve(estimateWriteCost(counts), `${counts.series} series`);
  }
  return protocol === "2.0"
    ? parseWriteRequestV2(raw, decodeLimits)
    : parseWriteRequest(raw, decodeLimits);
}
