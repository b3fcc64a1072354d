/**
 * Content negotiation of remote write, as the 2.0 specification says
 * (https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/#content-type):
 * the `Content-Type` names the protobuf message, and a message or encoding
 * this receiver does not take is a 415 (the sender may retry with another).
 *
 * - `application/x-protobuf` or `…;proto=prometheus.WriteRequest`: 1.0;
 * - `…;proto=io.prometheus.write.v2.Request`: 2.0;
 * - any other `proto`, media type or `Content-Encoding` than `snappy`: 415.
 *
 * The media type and parameter names are case-insensitive, the proto
 * parameter's value (a message name) is not.
 *
 * @module
 */
import { HttpError } from "../errors.ts";

/** The remote write protocol version of a request. */
export type WriteProtocol = "1.0" | "2.0";

/** The message names of the two versions. */
export const V1_MESSAGE = "prometheus.WriteRequest";
export const V2_MESSAGE = "io.prometheus.write.v2.Request";

/**
 * Which protocol a request speaks, from its headers.
 *
 * @throws {HttpError} 415 naming what is not accepted.
 */
export function negotiateWrite(h: Headers): WriteProtocol {
  const encoding = (h.get("content-encoding") ?? "").trim().toLowerCase();
  if (encoding !== "snappy") {
    throw new HttpError(
      415,
      `Unsupported Content-Encoding "${encoding}": remote write requires "snappy"`,
    );
  }
  const type = h.get("content-type") ?? "";
  const [mime, ...params] = type.split(";").map((s) => s.trim());
  if (mime.toLowerCase() !== "application/x-protobuf") {
    throw new HttpError(
      415,
      `Unsupported Content-Type "${type}": remote write requires "application/x-protobuf"`,
    );
  }
  let protocol: WriteProtocol = "1.0";
  for (const p of params) {
    if (p === "") continue;
    const eq = p.indexOf("=");
    const k = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
    if (k !== "proto") continue;
    const v = eq < 0 ? "" : p.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    if (v === V1_MESSAGE) protocol = "1.0";
    else if (v === V2_MESSAGE) protocol = "2.0";
    else {
      throw new HttpError(
        415,
        `Unsupported protobuf message "${v}": accepted are ${V1_MESSAGE} (remote write 1.0) ` +
          `and ${V2_MESSAGE} (remote write 2.0)`,
      );
    }
  }
  return protocol;
}

/** What a 2.0 response reports as written. */
export interface WrittenCounts {
  samples: number;
  histograms: number;
  exemplars: number;
}

/**
 * The `X-Prometheus-Remote-Write-*-Written` response headers a 2.0 receiver
 * must send (the sender takes a 2xx without them for a 1.0 receiver that
 * misread its request).
 */
export function writtenHeaders(c: WrittenCounts): Record<string, string> {
  return {
    "X-Prometheus-Remote-Write-Samples-Written": String(c.samples),
    "X-Prometheus-Remote-Write-Histograms-Written": String(c.histograms),
    "X-Prometheus-Remote-Write-Exemplars-Written": String(c.exemplars),
  };
}
