/**
 * The remote-read HTTP handler (`POST /read`, `/api/v1/read`): request →
 * limits → decode → query → sampled response
 * (https://prometheus.io/docs/prometheus/latest/querying/remote_read_api/).
 *
 * Status codes: 405 method, 415 encoding/type, 413 body size or too many
 * samples, 400 snappy/protobuf/matchers or no acceptable response type,
 * 503 database; 200 with `Content-Type: application/x-protobuf` and
 * `Content-Encoding: snappy` otherwise.
 *
 * Only the sampled response type is served (SAMPLES): Prometheus sends an
 * empty list of accepted types, which means SAMPLES, and clients that
 * prefer STREAMED_XOR_CHUNKS list SAMPLES too. A sampled response carries
 * each series' exemplars in the queried time range (`TimeSeries.exemplars`).
 * STREAMED_XOR_CHUNKS, were it served, could not: its `ChunkedSeries` has
 * no exemplar field.
 *
 * @module
 */
import type { Sql } from "../../deps.ts";
import { BadRequestError, HttpError, toResponse } from "../errors.ts";
import { readBody } from "../body.ts";
import type { Gate } from "../storage/db.ts";
import { decodeReadRequest, SAMPLES } from "./decode.ts";
import { compressResponse, encodeReadResponse } from "./encode.ts";
import { runQueries } from "./querier.ts";

/** Limits and collaborators of the read handler. */
export interface ReadHandlerOptions {
  sql: Sql;
  gate?: Gate;
  maxRequestBytes: number;
  maxDecodedBytes: number;
  readTimeoutMs: number;
  /** Most samples per response; see {@linkcode DEFAULT_MAX_READ_SAMPLES}. */
  maxSamples: number;
  /** In HA mode, the replica label, whose matchers are dropped. */
  replicaLabel?: string;
  /** Called after a successful read, for metrics. */
  onRead?: (queries: number, series: number, samples: number) => void;
}

export { DEFAULT_MAX_READ_SAMPLES } from "./querier.ts";

/** Builds the handler for `POST /read` and `/api/v1/read`. */
export function readHandler(o: ReadHandlerOptions): (req: Request) => Promise<Response> {
  return async (req) => {
    try {
      if (req.method !== "POST") {
        return toResponse(
          new HttpError(405, `Method ${req.method} not allowed: remote read takes POST`),
          { allow: "POST" },
        );
      }
      checkHeaders(req.headers);
      const body = await readBody(req, o.maxRequestBytes, o.readTimeoutMs);
      const decoded = decodeReadRequest(body, o.maxDecodedBytes);
      const types = decoded.acceptedResponseTypes;
      if (types.length > 0 && !types.includes(SAMPLES)) {
        throw new BadRequestError(
          `Cannot serve read request: none of the accepted response types ${
            JSON.stringify(types)
          } is supported; only SAMPLES (0) is`,
        );
      }
      const { results, samples } = await runQueries(decoded.queries, {
        sql: o.sql,
        gate: o.gate,
        maxSamples: o.maxSamples,
        replicaLabel: o.replicaLabel,
        exemplars: true,
      });
      const raw = encodeReadResponse(results);
      o.onRead?.(
        decoded.queries.length,
        results.reduce((n, r) => n + r.length, 0),
        samples,
      );
      return new Response(compressResponse(raw), {
        status: 200,
        headers: {
          "content-type": "application/x-protobuf",
          "content-encoding": "snappy",
        },
      });
    } catch (err) {
      return toResponse(err);
    }
  };
}

/**
 * Prometheus sends `Content-Encoding: snappy` and `Content-Type:
 * application/x-protobuf`; a body declared as anything else is refused
 * (415). Missing headers are accepted: the body is snappy either way.
 */
function checkHeaders(h: Headers): void {
  const encoding = (h.get("content-encoding") ?? "snappy").trim().toLowerCase();
  if (encoding !== "snappy") {
    throw new HttpError(
      415,
      `Unsupported Content-Encoding "${encoding}": remote read requires "snappy"`,
    );
  }
  const type = (h.get("content-type") ?? "application/x-protobuf").toLowerCase();
  const mime = type.split(";")[0].trim();
  if (mime !== "application/x-protobuf") {
    throw new HttpError(
      415,
      `Unsupported Content-Type "${type}": remote read requires "application/x-protobuf"`,
    );
  }
}
