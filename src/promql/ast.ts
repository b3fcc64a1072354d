/**
 * Our typed PromQL syntax tree. `parse.ts` builds it from the syntax tree of
 * Prometheus's own grammar (`@prometheus-io/lezer-promql`), checking types as
 * Prometheus's parser does; `eval.ts` evaluates it.
 *
 * Times and durations are in milliseconds.
 *
 * @module
 */

/** The four PromQL value types, named as in the HTTP API's `resultType`. */
export type ValueType = "scalar" | "vector" | "matrix" | "string";

/** A label matcher (Prometheus's four operators). */
export interface LabelMatcher {
  type: "=" | "!=" | "=~" | "!~";
  name: string;
  value: string;
}

/** `@ <time>`, `@ start()` or `@ end()`. */
export type AtModifier = { kind: "time"; ms: number } | { kind: "start" } | { kind: "end" };

export interface NumberLiteral {
  type: "number";
  value: number;
}

export interface StringLiteral {
  type: "string";
  value: string;
}

export interface VectorSelector {
  type: "vectorSelector";
  /** The metric name when given before the braces (for messages only). */
  name: string | null;
  matchers: LabelMatcher[];
  offsetMs: number;
  at: AtModifier | null;
}

export interface MatrixSelector {
  type: "matrixSelector";
  selector: VectorSelector;
  rangeMs: number;
}

export interface Subquery {
  type: "subquery";
  expr: Expr;
  rangeMs: number;
  /** 0: the query's step (Prometheus's default evaluation interval otherwise). */
  stepMs: number;
  offsetMs: number;
  at: AtModifier | null;
}

export interface Call {
  type: "call";
  func: string;
  args: Expr[];
}

export type AggregateOp =
  | "sum"
  | "min"
  | "max"
  | "avg"
  | "count"
  | "group"
  | "stddev"
  | "stdvar"
  | "topk"
  | "bottomk"
  | "quantile"
  | "count_values";

export interface Aggregate {
  type: "aggregate";
  op: AggregateOp;
  /** The parameter of topk, bottomk, quantile and count_values. */
  param: Expr | null;
  expr: Expr;
  grouping: string[];
  without: boolean;
}

export type ArithmeticOp = "+" | "-" | "*" | "/" | "%" | "^" | "atan2";
export type ComparisonOp = "==" | "!=" | ">" | "<" | ">=" | "<=";
export type SetOp = "and" | "or" | "unless";
export type BinaryOp = ArithmeticOp | ComparisonOp | SetOp;

/** How the two sides of a vector/vector operation are matched. */
export interface VectorMatching {
  card: "one-to-one" | "many-to-one" | "one-to-many" | "many-to-many";
  /** true: match on `labels` (`on`); false: on all but `labels` (`ignoring` or none). */
  on: boolean;
  labels: string[];
  /** `group_left(...)`/`group_right(...)` labels copied from the "one" side. */
  include: string[];
}

export interface Binary {
  type: "binary";
  op: BinaryOp;
  lhs: Expr;
  rhs: Expr;
  /** `bool` on a comparison. */
  returnBool: boolean;
  /** Set when both sides are instant vectors. */
  matching: VectorMatching | null;
}

export interface Unary {
  type: "unary";
  op: "+" | "-";
  expr: Expr;
}

export interface Paren {
  type: "paren";
  expr: Expr;
}

export type Expr =
  | NumberLiteral
  | StringLiteral
  | VectorSelector
  | MatrixSelector
  | Subquery
  | Call
  | Aggregate
  | Binary
  | Unary
  | Paren;

export const COMPARISON_OPS: readonly string[] = ["==", "!=", ">", "<", ">=", "<="];
export const SET_OPS: readonly string[] = ["and", "or", "unless"];

/** The type an expression evaluates to (the tree is type-checked when built). */
export function typeOf(e: Expr): ValueType {
  switch (e.type) {
    case "number":
      return "scalar";
    case "string":
      return "string";
    case "vectorSelector":
      return "vector";
    case "matrixSelector":
    case "subquery":
      return "matrix";
    case "call":
      return FUNCTIONS[e.func].returns;
    case "aggregate":
      return "vector";
    case "binary":
      return typeOf(e.lhs) === "scalar" && typeOf(e.rhs) === "scalar" ? "scalar" : "vector";
    case "unary":
    case "paren":
      return typeOf(e.expr);
  }
}

/** A function's signature: argument types, how many may be left out, result type. */
export interface FunctionSignature {
  args: ValueType[];
  /** Trailing arguments that may be omitted. */
  optional?: number;
  /** The last argument type may repeat (label_join). */
  variadic?: boolean;
  returns: ValueType;
}

const V: ValueType = "vector";
const M: ValueType = "matrix";
const S: ValueType = "scalar";
const STR: ValueType = "string";

const math = (): FunctionSignature => ({ args: [V], returns: V });
const overTime = (): FunctionSignature => ({ args: [M], returns: V });
const dateFn = (): FunctionSignature => ({ args: [V], optional: 1, returns: V });

/** The functions of Prometheus 2.42 with their signatures. */
export const FUNCTIONS: Record<string, FunctionSignature> = {
  abs: math(),
  absent: math(),
  absent_over_time: overTime(),
  acos: math(),
  acosh: math(),
  asin: math(),
  asinh: math(),
  atan: math(),
  atanh: math(),
  avg_over_time: overTime(),
  ceil: math(),
  changes: overTime(),
  clamp: { args: [V, S, S], returns: V },
  clamp_max: { args: [V, S], returns: V },
  clamp_min: { args: [V, S], returns: V },
  cos: math(),
  cosh: math(),
  count_over_time: overTime(),
  days_in_month: dateFn(),
  day_of_month: dateFn(),
  day_of_week: dateFn(),
  day_of_year: dateFn(),
  deg: math(),
  delta: overTime(),
  deriv: overTime(),
  exp: math(),
  floor: math(),
  histogram_count: math(),
  histogram_sum: math(),
  histogram_fraction: { args: [S, S, V], returns: V },
  histogram_quantile: { args: [S, V], returns: V },
  holt_winters: { args: [M, S, S], returns: V },
  hour: dateFn(),
  idelta: overTime(),
  increase: overTime(),
  irate: overTime(),
  label_replace: { args: [V, STR, STR, STR, STR], returns: V },
  label_join: { args: [V, STR, STR, STR], variadic: true, optional: 1, returns: V },
  last_over_time: overTime(),
  ln: math(),
  log10: math(),
  log2: math(),
  max_over_time: overTime(),
  min_over_time: overTime(),
  minute: dateFn(),
  month: dateFn(),
  pi: { args: [], returns: S },
  predict_linear: { args: [M, S], returns: V },
  present_over_time: overTime(),
  quantile_over_time: { args: [S, M], returns: V },
  rad: math(),
  rate: overTime(),
  resets: overTime(),
  round: { args: [V, S], optional: 1, returns: V },
  scalar: { args: [V], returns: S },
  sgn: math(),
  sin: math(),
  sinh: math(),
  sort: math(),
  sort_desc: math(),
  sqrt: math(),
  stddev_over_time: overTime(),
  stdvar_over_time: overTime(),
  sum_over_time: overTime(),
  tan: math(),
  tanh: math(),
  time: { args: [], returns: S },
  timestamp: math(),
  vector: { args: [S], returns: V },
  year: dateFn(),
};
