/**
 * The text of `write_v2.proto`, embedded (the compiled executable cannot
 * read the .proto files), and the protobufjs type built from it, for tests
 * and benchmarks: the write path decodes by hand. (Remote write 1.0 and
 * remote read: remote.proto, messages.ts.) `tests/data_model/protos_test.ts`
 * asserts that the text equals its file byte for byte: after editing the
 * .proto, paste it here again.
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

const v2Root = protobuf.parse(WRITE_V2_PROTO, { keepCase: true }).root;

/** `io.prometheus.write.v2.Request`. */
export const WriteRequestV2: protobuf.Type = v2Root.lookupType("io.prometheus.write.v2.Request");
