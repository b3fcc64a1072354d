/**
 * The texts of `write_v2.proto` and `types_full.proto`, embedded (the
 * compiled executable cannot read the .proto files), and protobufjs types
 * built from them, for tests and benchmarks: the write path decodes by hand.
 * `tests/data_model/protos_test.ts` asserts that each text equals its file
 * byte for byte: after editing a .proto, paste it here again.
 */
import { protobuf } from "../deps.ts";

/** The text of `write_v2.proto`. */
export const WRITE_V2_PROTO =
  `// Prometheus remote write 2.0: io.prometheus.write.v2.Request, written from
// the message definitions of the specification
// (https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/). Field
// numbers follow the upstream definitions; gogoproto options removed.
// TimeSeries.created_timestamp (6) is the rc.3 form of the start
// timestamp, Sample.start_timestamp (3) the rc.4 form; both are read.
syntax = "proto3";
package io.prometheus.write.v2;

message Request {
  reserved 1 to 3;
  repeated string symbols = 4;
  repeated TimeSeries timeseries = 5;
}

message TimeSeries {
  repeated uint32 labels_refs = 1;
  repeated Sample samples = 2;
  repeated Histogram histograms = 3;
  repeated Exemplar exemplars = 4;
  Metadata metadata = 5;
  int64 created_timestamp = 6;
}

message Exemplar {
  repeated uint32 labels_refs = 1;
  double value = 2;
  int64 timestamp = 3;
}

message Sample {
  double value = 1;
  int64 timestamp = 2;
  int64 start_timestamp = 3;
}

message Metadata {
  enum MetricType {
    METRIC_TYPE_UNSPECIFIED = 0;
    METRIC_TYPE_COUNTER = 1;
    METRIC_TYPE_GAUGE = 2;
    METRIC_TYPE_HISTOGRAM = 3;
    METRIC_TYPE_GAUGEHISTOGRAM = 4;
    METRIC_TYPE_SUMMARY = 5;
    METRIC_TYPE_INFO = 6;
    METRIC_TYPE_STATESET = 7;
  }
  MetricType type = 1;
  uint32 help_ref = 3;
  uint32 unit_ref = 4;
}

message Histogram {
  enum ResetHint {
    RESET_HINT_UNSPECIFIED = 0;
    RESET_HINT_YES = 1;
    RESET_HINT_NO = 2;
    RESET_HINT_GAUGE = 3;
  }
  oneof count {
    uint64 count_int = 1;
    double count_float = 2;
  }
  double sum = 3;
  sint32 schema = 4;
  double zero_threshold = 5;
  oneof zero_count {
    uint64 zero_count_int = 6;
    double zero_count_float = 7;
  }
  repeated BucketSpan negative_spans = 8;
  repeated sint64 negative_deltas = 9;
  repeated double negative_counts = 10;
  repeated BucketSpan positive_spans = 11;
  repeated sint64 positive_deltas = 12;
  repeated double positive_counts = 13;
  ResetHint reset_hint = 14;
  int64 timestamp = 15;
  repeated double custom_values = 16;
}

message BucketSpan {
  sint32 offset = 1;
  uint32 length = 2;
}
`;

/** The text of `types_full.proto`. */
export const TYPES_FULL_PROTO =
  `// Prometheus remote write 1.0 and remote read with the whole data model:
// the prometheus/prompb messages with exemplars (TimeSeries field 3) and
// native histograms (field 4). Field numbers follow the upstream
// definitions; gogoproto options removed. The program's own decoders are
// hand-written; this serves the tests (building and reading bodies).
syntax = "proto3";
package prometheus;

message WriteRequest {
  repeated TimeSeries timeseries = 1;
  reserved 2;
  repeated MetricMetadata metadata = 3;
}

message MetricMetadata {
  enum MetricType {
    UNKNOWN = 0;
    COUNTER = 1;
    GAUGE = 2;
    HISTOGRAM = 3;
    GAUGEHISTOGRAM = 4;
    SUMMARY = 5;
    INFO = 6;
    STATESET = 7;
  }
  MetricType type = 1;
  string metric_family_name = 2;
  string help = 4;
  string unit = 5;
}

message Sample {
  double value = 1;
  int64 timestamp = 2;
}

message Exemplar {
  repeated Label labels = 1;
  double value = 2;
  int64 timestamp = 3;
}

message Histogram {
  enum ResetHint {
    UNKNOWN = 0;
    YES = 1;
    NO = 2;
    GAUGE = 3;
  }
  oneof count {
    uint64 count_int = 1;
    double count_float = 2;
  }
  double sum = 3;
  sint32 schema = 4;
  double zero_threshold = 5;
  oneof zero_count {
    uint64 zero_count_int = 6;
    double zero_count_float = 7;
  }
  repeated BucketSpan negative_spans = 8;
  repeated sint64 negative_deltas = 9;
  repeated double negative_counts = 10;
  repeated BucketSpan positive_spans = 11;
  repeated sint64 positive_deltas = 12;
  repeated double positive_counts = 13;
  ResetHint reset_hint = 14;
  int64 timestamp = 15;
  repeated double custom_values = 16;
}

message BucketSpan {
  sint32 offset = 1;
  uint32 length = 2;
}

message TimeSeries {
  repeated Label labels = 1;
  repeated Sample samples = 2;
  repeated Exemplar exemplars = 3;
  repeated Histogram histograms = 4;
}

message Label {
  string name = 1;
  string value = 2;
}

message ReadResponse {
  repeated QueryResult results = 1;
}

message QueryResult {
  repeated TimeSeries timeseries = 1;
}
`;

const v2Root = protobuf.parse(WRITE_V2_PROTO, { keepCase: true }).root;
const fullRoot = protobuf.parse(TYPES_FULL_PROTO, { keepCase: true }).root;

/** `io.prometheus.write.v2.Request`. */
export const WriteRequestV2: protobuf.Type = v2Root.lookupType("io.prometheus.write.v2.Request");
/** `prometheus.WriteRequest` with exemplars, histograms and metadata. */
export const WriteRequestFull: protobuf.Type = fullRoot.lookupType("prometheus.WriteRequest");
/** `prometheus.ReadResponse` with histograms. */
export const ReadResponseFull: protobuf.Type = fullRoot.lookupType("prometheus.ReadResponse");
