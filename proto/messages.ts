/**
 * protobufjs reflection types for the messages in `remote.proto`, built once
 * from the embedded text (the compiled executable cannot read the .proto).
 * The write path does not use them: `src/remote_write/decode.ts` has a
 * hand-written decoder, several times faster than reflection. They serve the
 * read path and the tests.
 */
import { protobuf } from "../deps.ts";
import { REMOTE_PROTO } from "./remote_proto.ts";

/** The parsed `prometheus` package; field names keep the .proto's snake_case. */
export const root: protobuf.Root = protobuf.parse(REMOTE_PROTO, { keepCase: true }).root;

/** `prometheus.WriteRequest`: remote write 1.0 request body (before snappy). */
export const WriteRequest: protobuf.Type = root.lookupType("prometheus.WriteRequest");
/** `prometheus.ReadRequest`: remote read request body (before snappy). */
export const ReadRequest: protobuf.Type = root.lookupType("prometheus.ReadRequest");
/** `prometheus.ReadResponse`: sampled remote read response (before snappy). */
export const ReadResponse: protobuf.Type = root.lookupType("prometheus.ReadResponse");
