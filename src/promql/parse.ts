/**
 * PromQL text → our typed syntax tree ({@linkcode Expr}), through the
 * grammar Prometheus's UI uses (`@prometheus-io/lezer-promql`, the version
 * released with Prometheus 2.42). The grammar recovers from errors by
 * inserting error nodes; any error node is a parse error here. What the
 * grammar accepts but Prometheus's parser rejects (types of operands and
 * arguments, misplaced `offset`/`@`, matchers that match everything, …) is
 * checked while converting, with Prometheus's wording where it helps users.
 *
 * @module
 */
import { promqlParser, type SyntaxNode } from "../../deps.ts";
import { RegexError, translateRegex } from "../remote_read/regex.ts";
import { anchoredRegex } from "./regex.ts";
import {
  type AggregateOp,
  type AtModifier,
  type BinaryOp,
  COMPARISON_OPS,
  type Expr,
  FUNCTIONS,
  type LabelMatcher,
  SET_OPS,
  typeOf,
  type ValueType,
  type VectorMatching,
  type VectorSelector,
} from "./ast.ts";

/** A query that cannot be parsed; the API answers 400 `bad_data`. */
export class ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ParseError";
  }
}

const BINARY_OPS: Record<string, BinaryOp> = {
  Add: "+",
  Sub: "-",
  Mul: "*",
  Div: "/",
  Mod: "%",
  Pow: "^",
  Atan2: "atan2",
  Eql: "==",
  Neq: "!=",
  Gtr: ">",
  Lss: "<",
  Gte: ">=",
  Lte: "<=",
  And: "and",
  Or: "or",
  Unless: "unless",
};

const AGGREGATE_OPS: Record<string, AggregateOp> = {
  Sum: "sum",
  Min: "min",
  Max: "max",
  Avg: "avg",
  Count: "count",
  Group: "group",
  Stddev: "stddev",
  Stdvar: "stdvar",
  Topk: "topk",
  Bottomk: "bottomk",
  Quantile: "quantile",
  CountValues: "count_values",
};

/**
 * Parses a PromQL expression.
 *
 * @throws {ParseError} when the text is not a valid expression.
 */
export function parseExpr(text: string): Expr {
  return new Converter(text).run();
}

/** Parses a series selector (`match[]` of the metadata endpoints). */
export function parseSelector(text: string): LabelMatcher[] {
  const e = parseExpr(text);
  if (e.type !== "vectorSelector" || e.offsetMs !== 0 || e.at !== null) {
    throw new ParseError(
      `invalid parameter "match[]": ${JSON.stringify(text)} is not a series selector`,
    );
  }
  return e.matchers;
}

class Converter {
  constructor(private readonly src: string) {}

  run(): Expr {
    if (this.src.trim() === "") throw new ParseError("parse error: no expression found in input");
    const tree = promqlParser.parse(this.src);
    // The first error node anywhere is the error.
    let error: { from: number } | null = null;
    tree.iterate({
      enter: (n) => {
        if (error) return false;
        if (n.type.isError) {
          error = { from: n.from };
          return false;
        }
        return true;
      },
    });
    if (error !== null) {
      const at = (error as { from: number }).from;
      const near = this.src.slice(at, at + 20);
      throw new ParseError(
        near === ""
          ? `parse error: unexpected end of input at char ${at + 1}`
          : `parse error at char ${at + 1}: unexpected ${JSON.stringify(near)}`,
      );
    }
    const top = this.children(tree.topNode);
    if (top.length !== 1) throw new ParseError("parse error: no expression found in input");
    return this.expr(top[0]);
  }

  private text(n: SyntaxNode): string {
    return this.src.slice(n.from, n.to);
  }

  /** Children, without comments. */
  private children(n: SyntaxNode): SyntaxNode[] {
    const out: SyntaxNode[] = [];
    for (let c = n.firstChild; c; c = c.nextSibling) {
      if (c.name !== "LineComment") out.push(c);
    }
    return out;
  }

  private fail(n: SyntaxNode, message: string): never {
    throw new ParseError(`parse error at char ${n.from + 1}: ${message}`);
  }

  private expr(n: SyntaxNode): Expr {
    const c = this.children(n);
    switch (n.name) {
      case "NumberLiteral":
        return { type: "number", value: parseNumber(this.text(n)) };
      case "StringLiteral":
        return { type: "string", value: this.unquote(n) };
      case "ParenExpr":
        return { type: "paren", expr: this.expr(c[0]) };
      case "VectorSelector":
        return this.vectorSelector(n);
      case "MatrixSelector": {
        const inner = this.expr(c[0]);
        if (inner.type !== "vectorSelector") {
          this.fail(n, "ranges only allowed for vector selectors");
        }
        if (inner.offsetMs !== 0 || inner.at !== null) {
          this.fail(n, "no offset or @ modifier allowed before the range");
        }
        return { type: "matrixSelector", selector: inner, rangeMs: this.duration(c[1]) };
      }
      case "SubqueryExpr": {
        const inner = this.expr(c[0]);
        const t = typeOf(inner);
        if (t !== "vector") {
          this.fail(n, `subquery is only allowed on instant vector, got ${t} instead`);
        }
        const rangeMs = this.duration(c[1]);
        const stepMs = c[2] ? this.duration(c[2]) : 0;
        return { type: "subquery", expr: inner, rangeMs, stepMs, offsetMs: 0, at: null };
      }
      case "OffsetExpr": {
        const target = this.expr(c[0]);
        const negative = c.length === 4;
        const ms = this.duration(c[c.length - 1]) * (negative ? -1 : 1);
        const sel = this.modifiable(n, target, "offset");
        if (sel.offsetMs !== 0) this.fail(n, "offset may not be set multiple times");
        sel.offsetMs = ms;
        return target;
      }
      case "StepInvariantExpr": {
        const target = this.expr(c[0]);
        const sel = this.modifiable(n, target, "@");
        if (sel.at !== null) this.fail(n, "@ <timestamp> may not be set multiple times");
        sel.at = this.atModifier(c[2]);
        return target;
      }
      case "UnaryExpr": {
        const inner = this.expr(c[1]);
        const t = typeOf(inner);
        if (t !== "scalar" && t !== "vector") {
          this.fail(
            n,
            `unary expression only allowed on expressions of type scalar or instant vector, got "${t}"`,
          );
        }
        const op = this.text(c[0]) === "-" ? "-" : "+";
        // Prometheus folds a sign into a number literal.
        if (inner.type === "number") {
          return op === "-" ? { type: "number", value: -inner.value } : inner;
        }
        return { type: "unary", op, expr: inner };
      }
      case "FunctionCall":
        return this.call(n, c);
      case "AggregateExpr":
        return this.aggregate(n, c);
      case "BinaryExpr":
        return this.binary(n, c);
      default:
        this.fail(n, `unexpected ${n.name}`);
    }
  }

  /** What `offset` and `@` may follow: a selector (instant or range) or a subquery. */
  private modifiable(
    n: SyntaxNode,
    e: Expr,
    what: string,
  ): { offsetMs: number; at: AtModifier | null } {
    if (e.type === "vectorSelector" || e.type === "subquery") return e;
    if (e.type === "matrixSelector") return e.selector;
    const which = what === "offset" ? "offset modifier" : "@ modifier";
    this.fail(
      n,
      `${which} must be preceded by an instant vector selector or range vector selector or a subquery`,
    );
  }

  private atModifier(n: SyntaxNode): AtModifier {
    if (n.name === "AtModifierPreprocessors") {
      return this.text(n).startsWith("start") ? { kind: "start" } : { kind: "end" };
    }
    const v = parseNumber(this.text(n));
    if (!Number.isFinite(v)) this.fail(n, `timestamp out of bounds for @ modifier: ${v}`);
    return { kind: "time", ms: Math.round(v * 1000) };
  }

  private vectorSelector(n: SyntaxNode): VectorSelector {
    let name: string | null = null;
    const matchers: LabelMatcher[] = [];
    for (const c of this.children(n)) {
      if (c.name === "Identifier" || c.name === "MetricName") {
        name = this.text(c);
      } else if (c.name === "LabelMatchers") {
        for (const m of this.children(c)) {
          const [ln, op, val] = this.children(m);
          const type = this.text(op) as LabelMatcher["type"];
          const value = this.unquote(val);
          if (type === "=~" || type === "!~") {
            // Validated as PostgreSQL will run it (RE2 translated).
            try {
              translateRegex(value);
            } catch (err) {
              if (err instanceof RegexError) this.fail(m, err.message);
              throw err;
            }
          }
          matchers.push({ type, name: this.text(ln), value });
        }
      }
    }
    if (name !== null) {
      if (matchers.some((m) => m.name === "__name__")) {
        this.fail(n, `metric name must not be set twice: ${JSON.stringify(name)}`);
      }
      matchers.unshift({ type: "=", name: "__name__", value: name });
    }
    if (!matchers.some((m) => !matchesEmpty(m))) {
      this.fail(n, "vector selector must contain at least one non-empty matcher");
    }
    return { type: "vectorSelector", name, matchers, offsetMs: 0, at: null };
  }

  private call(n: SyntaxNode, c: SyntaxNode[]): Expr {
    const name = this.text(c[0]);
    const sig = FUNCTIONS[name];
    if (!sig) this.fail(n, `unknown function with name ${JSON.stringify(name)}`);
    const args = c[1] ? this.children(c[1]).map((a) => this.expr(a)) : [];
    const min = sig.args.length - (sig.optional ?? 0);
    if (args.length < min || (!sig.variadic && args.length > sig.args.length)) {
      this.fail(
        n,
        `expected ${sig.optional ? `at least ${min}` : sig.args.length} argument(s) in call to ${
          JSON.stringify(name)
        }, got ${args.length}`,
      );
    }
    args.forEach((a, i) => {
      const want = sig.args[Math.min(i, sig.args.length - 1)];
      this.expectType(n, a, want, `call to function ${JSON.stringify(name)}`);
    });
    return { type: "call", func: name, args };
  }

  private aggregate(n: SyntaxNode, c: SyntaxNode[]): Expr {
    const op = AGGREGATE_OPS[this.children(c[0])[0]?.name ?? ""];
    if (!op) this.fail(n, `unknown aggregation ${JSON.stringify(this.text(c[0]))}`);
    let grouping: string[] = [];
    let without = false;
    let body: SyntaxNode | null = null;
    for (const x of c.slice(1)) {
      if (x.name === "AggregateModifier") {
        const [kw, labels] = this.children(x);
        without = kw.name === "Without";
        grouping = labels ? this.children(labels).map((l) => this.text(l)) : [];
      } else if (x.name === "FunctionCallBody") {
        body = x;
      }
    }
    const args = body ? this.children(body).map((a) => this.expr(a)) : [];
    const hasParam = op === "topk" || op === "bottomk" || op === "quantile" ||
      op === "count_values";
    if (args.length !== (hasParam ? 2 : 1)) {
      this.fail(
        n,
        `wrong number of arguments for aggregate expression provided, expected ${
          hasParam ? 2 : 1
        }, got ${args.length}`,
      );
    }
    const expr = args[args.length - 1];
    this.expectType(n, expr, "vector", "aggregation expression");
    const param = hasParam ? args[0] : null;
    if (param) {
      this.expectType(
        n,
        param,
        op === "count_values" ? "string" : "scalar",
        "aggregation parameter",
      );
    }
    return { type: "aggregate", op, param, expr, grouping, without };
  }

  private binary(n: SyntaxNode, c: SyntaxNode[]): Expr {
    const lhs = this.expr(c[0]);
    const rhs = this.expr(c[c.length - 1]);
    const op = BINARY_OPS[c[1].name];
    if (!op) this.fail(n, `unknown binary operator ${JSON.stringify(this.text(c[1]))}`);
    let returnBool = false;
    let modifier: SyntaxNode | null = null;
    for (const x of c.slice(2, -1)) {
      if (x.name === "BoolModifier") returnBool = true;
      if (x.name === "MatchingModifierClause") modifier = x;
    }
    const lt = typeOf(lhs);
    const rt = typeOf(rhs);
    for (const t of [lt, rt]) {
      if (t !== "scalar" && t !== "vector") {
        this.fail(n, "binary expression must contain only scalar and instant vector types");
      }
    }
    const isComparison = COMPARISON_OPS.includes(op);
    const isSet = SET_OPS.includes(op);
    if (returnBool && !isComparison) {
      this.fail(n, "bool modifier can only be used on comparison operators");
    }
    if (isComparison && !returnBool && lt === "scalar" && rt === "scalar") {
      this.fail(n, "comparisons between scalars must use BOOL modifier");
    }
    if (isSet && (lt !== "vector" || rt !== "vector")) {
      this.fail(n, `set operator ${JSON.stringify(op)} not allowed in binary scalar expression`);
    }
    let matching: VectorMatching | null = null;
    if (lt === "vector" && rt === "vector") {
      matching = {
        card: isSet ? "many-to-many" : "one-to-one",
        on: false,
        labels: [],
        include: [],
      };
    }
    if (modifier) {
      if (!matching) this.fail(n, "vector matching only allowed between instant vectors");
      const parts = this.children(modifier);
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i];
        const labels = parts[i + 1]?.name === "GroupingLabels"
          ? this.children(parts[i + 1]).map((l) => this.text(l))
          : null;
        if (p.name === "On" || p.name === "Ignoring") {
          matching.on = p.name === "On";
          matching.labels = labels ?? [];
        } else if (p.name === "GroupLeft" || p.name === "GroupRight") {
          if (isSet) this.fail(n, `no grouping allowed for ${JSON.stringify(op)} operation`);
          matching.card = p.name === "GroupLeft" ? "many-to-one" : "one-to-many";
          matching.include = labels ?? [];
        }
        if (labels) i++;
      }
      if (matching.on) {
        for (const l of matching.include) {
          if (matching.labels.includes(l)) {
            this.fail(
              n,
              `label ${JSON.stringify(l)} must not occur in ON and GROUP clause at once`,
            );
          }
        }
      }
    }
    return { type: "binary", op, lhs, rhs, returnBool, matching };
  }

  private expectType(n: SyntaxNode, e: Expr, want: ValueType, context: string): void {
    const got = typeOf(e);
    if (got !== want) {
      const name = (t: ValueType) =>
        t === "vector" ? "instant vector" : t === "matrix" ? "range vector" : t;
      this.fail(n, `expected type ${name(want)} in ${context}, got ${name(got)}`);
    }
  }

  private duration(n: SyntaxNode): number {
    const ms = parseDuration(this.text(n));
    if (ms === null) this.fail(n, `bad duration ${JSON.stringify(this.text(n))}`);
    if (ms === 0) this.fail(n, "duration must be greater than 0");
    return ms;
  }

  private unquote(n: SyntaxNode): string {
    try {
      return unquoteString(this.text(n));
    } catch (err) {
      this.fail(n, (err as Error).message);
    }
  }
}

/** Whether a matcher matches the empty string (then it selects everything). */
function matchesEmpty(m: LabelMatcher): boolean {
  switch (m.type) {
    case "=":
      return m.value === "";
    case "!=":
      return m.value !== "";
    case "=~":
      return anchoredRegex(m.value)?.test("") ?? false;
    case "!~":
      return !(anchoredRegex(m.value)?.test("") ?? true);
  }
}

const DURATION_RE =
  /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;
const UNIT_MS = [365 * 86400_000, 7 * 86400_000, 86400_000, 3600_000, 60_000, 1000, 1];

/** A Prometheus duration (`1h30m`, `5m`, `10s`, `100ms`) in ms; null when malformed. */
export function parseDuration(s: string): number | null {
  const m = DURATION_RE.exec(s);
  if (!m || s === "") return null;
  let ms = 0;
  for (let i = 0; i < UNIT_MS.length; i++) {
    if (m[i + 1] !== undefined) ms += Number(m[i + 1]) * UNIT_MS[i];
  }
  return ms;
}

/** A number literal as Go's strconv would read it (decimal, hex, octal, Inf, NaN). */
export function parseNumber(s: string): number {
  let sign = 1;
  let t = s;
  if (t.startsWith("+") || t.startsWith("-")) {
    if (t[0] === "-") sign = -1;
    t = t.slice(1);
  }
  const lower = t.toLowerCase();
  if (lower === "inf" || lower === "infinity") return sign * Infinity;
  if (lower === "nan") return NaN;
  if (/^0x[0-9a-f]+$/i.test(t)) return sign * parseInt(t.slice(2), 16);
  if (/^0[0-7]+$/.test(t)) return sign * parseInt(t.slice(1), 8);
  const v = Number(t);
  if (Number.isNaN(v)) throw new ParseError(`parse error: bad number ${JSON.stringify(s)}`);
  return sign * v;
}

/** A Go string literal ("…" or '…' with escapes, `…` raw) → its value. */
export function unquoteString(s: string): string {
  const q = s[0];
  if (s.length < 2 || s[s.length - 1] !== q) throw new Error(`unterminated string ${s}`);
  const body = s.slice(1, -1);
  if (q === "`") return body;
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = body[++i];
    const hex = (n: number) => {
      const h = body.slice(i + 1, i + 1 + n);
      if (h.length !== n || !/^[0-9a-fA-F]+$/.test(h)) throw new Error("invalid escape sequence");
      i += n;
      return parseInt(h, 16);
    };
    switch (e) {
      case "a":
        out += "\x07";
        break;
      case "b":
        out += "\b";
        break;
      case "f":
        out += "\f";
        break;
      case "n":
        out += "\n";
        break;
      case "r":
        out += "\r";
        break;
      case "t":
        out += "\t";
        break;
      case "v":
        out += "\v";
        break;
      case "\\":
        out += "\\";
        break;
      case "'":
      case '"':
        if (e !== q) throw new Error("invalid escape sequence");
        out += e;
        break;
      case "x":
        out += String.fromCharCode(hex(2));
        break;
      case "u":
        out += String.fromCodePoint(hex(4));
        break;
      case "U":
        out += String.fromCodePoint(hex(8));
        break;
      default:
        if (e >= "0" && e <= "7") {
          const o = body.slice(i, i + 3);
          if (!/^[0-7]{3}$/.test(o)) throw new Error("invalid escape sequence");
          out += String.fromCharCode(parseInt(o, 8));
          i += 2;
        } else {
          throw new Error("invalid escape sequence");
        }
    }
  }
  return out;
}
