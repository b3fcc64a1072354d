/**
 * Label matchers → a SQL condition on `_prom_catalog.series` (alias `s`),
 * with Prometheus's semantics:
 *
 * - a series without a label has that label's value "": `foo=""` selects
 *   the series WITHOUT `foo` (no stored label is empty: the write path
 *   drops empty values, as Prometheus does), `foo!=""` those with it, and a
 *   regex that matches "" (`foo=~"a|"`, `foo!~"b"`) selects series without
 *   `foo` too;
 * - regexes are fully anchored, in Go's RE2 syntax, translated by
 *   {@linkcode translateRegex} (see there for what is supported);
 * - `__name__` is also `s.metric_name`, which has a btree index; other
 *   equality matchers use the GIN index on `labels` (`@>`); a regex made of
 *   literal alternatives (`a|b`) becomes `= ANY(…)`.
 *
 * @module
 */
import { BadRequestError } from "../errors.ts";
import type { Matcher } from "./decode.ts";
import { RegexError, translateRegex } from "./regex.ts";

const METRIC_NAME = "__name__";

/** A SQL condition with its `$n` parameters. */
export interface SqlCondition {
  /** A boolean SQL expression over `s` (an `_prom_catalog.series` row). */
  text: string;
  /** Parameters, numbered from `firstParam`. */
  params: (string | string[])[];
}

/**
 * Builds the condition selecting the series that all `matchers` match.
 * Parameters are numbered from `$<firstParam>`.
 *
 * @throws {BadRequestError} for a regex that cannot be translated.
 */
export function matchersToSql(matchers: Matcher[], firstParam = 1): SqlCondition {
  const params: (string | string[])[] = [];
  const p = (v: string | string[], cast: string): string => {
    params.push(v);
    return `$${firstParam + params.length - 1}::${cast}`;
  };
  const parts: string[] = [];
  for (const m of matchers) {
    const isName = m.name === METRIC_NAME;
    const value = (): string => isName ? "s.metric_name" : `(s.labels ->> ${p(m.name, "text")})`;
    const has = (): string => `(s.labels ? ${p(m.name, "text")})`;
    switch (m.type) {
      case "=":
        if (m.value === "") parts.push(isName ? "false" : `NOT ${has()}`);
        else if (isName) parts.push(`s.metric_name = ${p(m.value, "text")}`);
        else parts.push(`s.labels @> ${p(JSON.stringify({ [m.name]: m.value }), "text::jsonb")}`);
        break;
      case "!=":
        if (m.value === "") {
          if (!isName) parts.push(has());
        } else if (isName) {
          parts.push(`s.metric_name <> ${p(m.value, "text")}`);
        } else {
          parts.push(
            `NOT (s.labels @> ${p(JSON.stringify({ [m.name]: m.value }), "text::jsonb")})`,
          );
        }
        break;
      case "=~":
      case "!~": {
        const re = translate(m);
        const negate = m.type === "!~";
        const subject = isName ? value() : `coalesce(${value()}, '')`;
        if (re.literals !== null) {
          parts.push(
            negate
              ? `${subject} <> ALL(${p(re.literals, "text[]")})`
              : `${subject} = ANY(${p(re.literals, "text[]")})`,
          );
        } else {
          parts.push(`${subject} ${negate ? "!~" : "~"} ${p(re.pattern, "text")}`);
        }
        break;
      }
    }
  }
  return { text: parts.length ? parts.join(" AND ") : "true", params };
}

function translate(m: Matcher) {
  try {
    return translateRegex(m.value);
  } catch (err) {
    if (err instanceof RegexError) {
      const reason = err.message.charAt(0).toLowerCase() + err.message.slice(1);
      throw new BadRequestError(
        `Cannot serve read request: ${reason} (matcher on label "${m.name}")`,
      );
    }
    throw err;
  }
}
