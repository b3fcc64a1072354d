/**
 * Decodes a Prometheus remote read request: snappy block format around a
 * `prometheus.ReadRequest` (https://prometheus.io/docs/prometheus/latest/querying/remote_read_api/).
 * Knows nothing of HTTP: bytes and a limit in, validated queries out, or a
 * {@linkcode BadRequestError} whose one-line message says what is wrong.
 *
 * Reads are rare and small next to writes, so the protobufjs reflection
 * type built from `proto/remote.proto` decodes them.
 *
 * @module
 */
import { ReadRequest } from "../../proto/messages.ts";
import { BadRequestError } from "../errors.ts";
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from "../ingest.ts";
import { uncompressSnappyBlock } from "../wire/snappy.ts";

/** Matcher types, numbered as in `prometheus.LabelMatcher.Type`. */
export type MatchType = "=" | "!=" | "=~" | "!~";

const MATCH_TYPES: readonly MatchType[] = ["=", "!=", "=~", "!~"];

/** A label matcher of a query. */
export interface Matcher {
  type: MatchType;
  name: string;
  value: string;
}

/** One query of a read request: a time range (inclusive, ms) and matchers. */
export interface ReadQuery {
  /** Clamped to years 0001..9999, like every stored timestamp. */
  startMs: number;
  endMs: number;
  matchers: Matcher[];
}

/** Response types, numbered as in `prometheus.ReadRequest.ResponseType`. */
export const SAMPLES = 0;
export const STREAMED_XOR_CHUNKS = 1;

/** A decoded read request. */
export interface DecodedRead {
  queries: ReadQuery[];
  /** As sent; empty means SAMPLES only. */
  acceptedResponseTypes: number[];
}

/**
 * Decodes a snappy-compressed `prometheus.ReadRequest`.
 *
 * @throws {BadRequestError} `Cannot decode read request: …`
 */
export function decodeReadRequest(compressed: Uint8Array, maxDecodedBytes: number): DecodedRead {
  const raw = uncompressSnappyBlock(compressed, maxDecodedBytes, "read request");
  const fail = (message: string): never => {
    throw new BadRequestError(`Cannot decode read request: ${message}`);
  };
  let msg: ReadRequestMessage;
  try {
    msg = ReadRequest.decode(raw) as unknown as ReadRequestMessage;
  } catch (err) {
    return fail(`invalid protobuf: ${err instanceof Error ? err.message : String(err)}`);
  }
  const queries = (msg.queries ?? []).map((q, i): ReadQuery => {
    const matchers = (q.matchers ?? []).map((m, j): Matcher => {
      const type = MATCH_TYPES[m.type ?? 0];
      if (type === undefined) fail(`query ${i} matcher ${j} has unknown type ${m.type}`);
      return { type, name: m.name ?? "", value: m.value ?? "" };
    });
    return {
      startMs: clampTime(q.start_timestamp_ms),
      endMs: clampTime(q.end_timestamp_ms),
      matchers,
    };
  });
  return { queries, acceptedResponseTypes: [...(msg.accepted_response_types ?? [])] };
}

/** The fields of a decoded ReadRequest that are read (int64 as Long or number). */
interface ReadRequestMessage {
  queries?: {
    start_timestamp_ms?: LongLike;
    end_timestamp_ms?: LongLike;
    matchers?: { type?: number; name?: string; value?: string }[];
  }[];
  accepted_response_types?: number[];
}

type LongLike = number | { toString(): string } | null | undefined;

/** An int64 from protobufjs (a Long, or a number) as ms, clamped to the storable range. */
function clampTime(v: LongLike): number {
  const n = v === null || v === undefined ? 0 : typeof v === "number" ? v : Number(v.toString());
  return Math.min(MAX_TIMESTAMP_MS, Math.max(MIN_TIMESTAMP_MS, n));
}
