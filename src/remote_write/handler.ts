/**
 * The remote-write HTTP handler: request → limits → decode → filter (HA or
 * legacy election) → write → status. Each stage is its own module; this one
 * only does the HTTP and the order of checks, which is part of the contract
 * (https://prometheus.io/docs/specs/remote_write_spec/):
 * 405 method, 415 encoding/type, 413 body size, 400 snappy/protobuf/labels,
 * 503 database, 204 after commit.
 */
import { readBody } from "../body.ts";
import { HttpError, toResponse } from "../errors.ts";
import type { DecodedWrite, IngestFilter, SampleWriter } from "../ingest.ts";
import { snappyDeclaredLength, uncompressSnappyBlock } from "../wire/snappy.ts";
import { type DecodeLimits, parseWriteRequest } from "./decode.ts";
import {
  checkWriteCounts,
  estimateWriteCost,
  type MemoryBudget,
  type RequestLimits,
  type Reservation,
  scanWriteRequest,
} from "../limits.ts";

// Moved to ingest.ts and body.ts; re-exported for existing importers.
export type { FilterResult, IngestFilter } from "../ingest.ts";
export { passThrough } from "../ingest.ts";
export { readBody } from "../body.ts";

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
      checkHeaders(req.headers);
      const body = await readBody(
        req,
        o.maxRequestBytes,
        o.readTimeoutMs,
        reservation && ((n) => reservation.reserve(n, "the request body")),
      );
      const decoded = decodeWithin(body, { maxDecodedBytes: o.maxDecodedBytes }, o, reservation);
      const kept = await o.filter.apply(decoded);
      const write = async () => {
        const result = await o.writer.write(kept.series, {
          guard: kept.guard,
          staged: kept.staged,
          fences: kept.fences,
        });
        kept.committed?.();
        o.onWritten?.(result.samples, result.newSeries, result.deduplicated);
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
      return new Response(null, { status: 204 });
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
): DecodedWrite {
  const declared = snappyDeclaredLength(body);
  if (reservation && declared !== null && declared <= decodeLimits.maxDecodedBytes) {
    reservation.reserve(declared, "the decompressed body");
  }
  const raw = uncompressSnappyBlock(body, decodeLimits.maxDecodedBytes, "write request");
  if (o.limits || reservation) {
    const counts = scanWriteRequest(raw);
    if (o.limits) checkWriteCounts(counts, o.limits);
    reservation?.reserve(estimateWriteCost(counts), `${counts.series} series`);
  }
  return parseWriteRequest(raw, decodeLimits);
}

function checkHeaders(h: Headers): void {
  const encoding = (h.get("content-encoding") ?? "").trim().toLowerCase();
  if (encoding !== "snappy") {
    throw new HttpError(
      415,
      `Unsupported Content-Encoding "${encoding}": remote write 1.0 requires "snappy"`,
    );
  }
  // The media type and parameter names are case-insensitive, the proto
  // parameter's value (a message name) is not.
  const type = h.get("content-type") ?? "";
  const [mime, ...params] = type.split(";").map((s) => s.trim());
  if (mime.toLowerCase() !== "application/x-protobuf") {
    throw new HttpError(
      415,
      `Unsupported Content-Type "${type}": remote write 1.0 requires "application/x-protobuf"`,
    );
  }
  for (const p of params) {
    const eq = p.indexOf("=");
    const k = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
    const v = eq < 0 ? "" : p.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    if (k === "proto" && v !== "prometheus.WriteRequest") {
      throw new HttpError(
        415,
        `Unsupported protobuf message "${v}": only prometheus.WriteRequest (remote write 1.0) is accepted`,
      );
    }
  }
}
