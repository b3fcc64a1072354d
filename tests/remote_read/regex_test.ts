/**
 * translateRegex(): RE2 (Go, as Prometheus compiles label regexes) →
 * PostgreSQL ARE. One table of cases, checked twice: against a real
 * Prometheus (its `label_replace` anchors and compiles a regex exactly as a
 * label matcher does, with Go's regexp), so the expected answers are Go's;
 * and through the translation against a real PostgreSQL, so a pattern that
 * PostgreSQL reads differently fails.
 */
import { postgres } from "../../deps.ts";
import { RegexError, translateRegex } from "../../src/remote_read/regex.ts";
import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { PG_ADMIN_URI } from "../helpers/db.ts";
import { killAll } from "../helpers/procs.ts";
import { startPrometheus } from "../helpers/prometheus.ts";

/** [regex, value, does Go's `^(?:regex)$` match value]. */
const CASES: [string, string, boolean][] = [
  ["foo", "foo", true],
  ["foo", "foox", false],
  ["foo", "xfoo", false],
  ["fo+", "fooo", true],
  ["a|b", "a", true],
  ["a|b", "ab", false],
  ["a|", "", true],
  ["", "", true],
  ["", "a", false],
  [".*", "", true],
  [".*", "a\nb", false], // "." excludes the newline in Go
  ["(?s).*", "a\nb", true],
  ["(?s:.)*x", "\n\nx", true],
  ["a(?s:.)b.c", "a\nb\nc", false],
  ["[^a]", "\n", true], // but a negated class includes it
  ["a.c", "abc", true],
  ["a.b", "a\u00e9b", true],
  ["\\d+", "123", true],
  ["\\d", "\u0663", false], // Arabic-Indic three: not a digit in Go
  ["\\w+", "h\u00e9llo", false], // é is not a word character in Go
  ["\\w+", "he_llo9", true],
  ["\\s", "\v", false], // Go's \s has no vertical tab
  ["\\s+", " \t\n\r\f", true],
  ["[[:space:]]", "\v", true],
  ["[[:alpha:]]+", "abcXYZ", true],
  ["[[:alpha:]]", "\u00e9", false],
  ["[[:^digit:]]", "a", true],
  ["[[:^digit:]]", "5", false],
  ["[[:word:]]+", "ab_1", true],
  ["[\\D]", "x", true],
  ["[\\D]", "1", false],
  ["[^\\d]", "1", false],
  ["[^\\d]", "x", true],
  ["[\\s\\d]+", "1 2", true],
  ["[a-c]+", "abcb", true],
  ["[a-c]", "d", false],
  ["[]a]", "]", true],
  ["[]a]", "a", true],
  ["[a-]", "-", true],
  ["[\\]]", "]", true],
  ["[\\n]", "\n", true],
  ["[.]", "a", false],
  ["[\\x{10000}-\\x{10FFFF}]", "\u{1F600}", true],
  ["[\\x00-\\x{10FFFF}]", "z", true],
  ["a{2,3}", "aa", true],
  ["a{2,3}", "aaaa", false],
  ["a{2}", "aa", true],
  ["a{2,}", "aaaaa", true],
  ["a{,2}", "a{,2}", true], // not a repetition in Go: literal braces
  ["x{", "x{", true],
  ["{}", "{}", true],
  ["a}", "a}", true],
  ["(?i)abc", "ABC", true],
  ["(?i)a[b-c]", "AB", true],
  ["(?i)[^a]", "A", false],
  ["abc", "ABC", false],
  ["\\.", ".", true],
  ["\\.", "a", false],
  ["\\Q.*\\E", ".*", true],
  ["\\Q.*\\E", "ab", false],
  ["\\Qab\\E+", "abbb", true],
  ["\\Qab\\E+", "abab", false],
  ["\\x41", "A", true],
  ["\\x{1F600}", "\u{1F600}", true],
  ["\\101", "A", true],
  ["\\bfoo\\b", "foo", true],
  ["a\\bb", "ab", false],
  ["a\\Bb", "ab", true],
  ["a\\b b", "a b", true],
  ["\u00e9\\b", "\u00e9", false], // é is no word character: no boundary at the end
  ["^foo$", "foo", true],
  ["a^b", "ab", false],
  ["a$", "a\n", false], // without m, $ is the end of the text only
  ["(?m)a$\\nb", "a\nb", true],
  ["(?m)a\\n^b", "a\nb", true],
  ["a\\n^b", "a\nb", false],
  ["\\Aa\\z", "a", true],
  ["(a)(?:b)(?P<n>c)", "abc", true],
  ["(?)a", "a", true],
  ["a*?", "aaa", true],
  ["a+?b", "aab", true],
  ["(?U)a+b", "aab", true],
  ["\\n", "\n", true],
  ["\\t", "\t", true],
  ["\\-", "-", true],
  ["\\ ", " ", true],
  ["\\#", "#", true],
  ["\\\\", "\\", true],
  ["\u00e9+", "\u00e9\u00e9\u00e9", true],
  ["\u{1F600}+", "\u{1F600}\u{1F600}", true],
  ["(a|b)*c", "ababc", true],
  ["()", "", true],
  ["(|a)b", "b", true],
  ["\\x00|a", "a", true],
  ["\\x00|a", "", false],
  ["[\\x00]", "a", false],
  ["api_.*|node_cpu.*", "node_cpu_seconds_total", true],
  ["'; DROP TABLE x; --", "'; DROP TABLE x; --", true],
];

Deno.test("translateRegex() matches like Go's RE2, as PostgreSQL evaluates it", async () => {
  const sql = postgres(PG_ADMIN_URI, { max: 1, onnotice: () => {} });
  try {
    const patterns = CASES.map(([re]) => translateRegex(re).pattern);
    const values = CASES.map(([, v]) => v);
    const rows = await sql<{ i: number; m: boolean }[]>`
      SELECT i::int, v ~ p AS m
      FROM unnest(${values}::text[], ${patterns}::text[]) WITH ORDINALITY AS t(v, p, i)
      ORDER BY i`;
    const wrong = rows
      .filter((r) => r.m !== CASES[r.i - 1][2])
      .map((r) => {
        const [re, v, want] = CASES[r.i - 1];
        return `${JSON.stringify(re)} on ${JSON.stringify(v)}: want ${want}, ` +
          `PostgreSQL says ${r.m} with ${patterns[r.i - 1]}`;
      });
    assertEquals(wrong, []);
    assertEquals(rows.length, CASES.length);
  } finally {
    await sql.end({ timeout: 5 });
  }
});

Deno.test("translateRegex() reports plain literal alternatives, which match as a set", () => {
  assertEquals(translateRegex("foo").literals, ["foo"]);
  assertEquals(translateRegex("a|bc|").literals, ["a", "bc", ""]);
  assertEquals(translateRegex("").literals, [""]);
  assertEquals(translateRegex("a\\.b").literals, ["a.b"]);
  assertEquals(translateRegex("\\Qa|b\\E").literals, ["a|b"]);
  assertEquals(translateRegex("a.b").literals, null);
  assertEquals(translateRegex("ab+").literals, null);
  assertEquals(translateRegex("(a|b)").literals, null);
  assertEquals(translateRegex("(?i)a").literals, null);
  assertEquals(translateRegex("a\\x00").literals, null);
  // The literal sets agree with the patterns on every case above.
  for (const [re, value, want] of CASES) {
    const { literals } = translateRegex(re);
    if (literals !== null) assertEquals(literals.includes(value), want, re);
  }
});

Deno.test("translateRegex() anchors the pattern and puts (?i) first", () => {
  assertEquals(translateRegex("a|b").pattern, "^(?:a|b)$");
  assertEquals(translateRegex("(?i)a|b").pattern, "(?i)^(?:a|b)$");
  assertEquals(translateRegex("a.").pattern, "^(?:a[^\\u000a])$");
});

/** Regexes Prometheus rejects. */
const INVALID = [
  "(",
  ")",
  "a)",
  "a**",
  "a+*",
  "a??+",
  "a{2}{3}",
  "*a",
  "a|*",
  "(*)",
  "\\1",
  "[a",
  "[]",
  "[z-a]",
  "\\Z",
  "\\8",
  "\\C",
  "\\Qa", // the \Q swallows the ")" of Prometheus's ^(?:…)$
  "a{1001}",
  "a{3,2}",
  "[[:foo:]]",
  "\\\u00e9",
  "(?P<>a)",
  "x\\",
  "(?<=a)b",
  "(?-)",
  "\\x{110000}",
  "\\xZZ",
  "\\q",
];

/** Regexes Prometheus accepts but PostgreSQL cannot express (or not exactly). */
const UNSUPPORTED = [
  "\\pL",
  "\\p{Greek}",
  "[\\PL]",
  "a(?i)b",
  "(?i:a)",
  "(?-i)a",
  "a{256}",
  "a{1,300}",
  "^*",
  "\\b+",
];

Deno.test("translateRegex() rejects what Prometheus rejects and what PostgreSQL cannot express", () => {
  for (const re of INVALID) {
    const err = assertThrows(() => translateRegex(re), RegexError, `Invalid regex`);
    assert(err.message.includes(`"${re}"`), err.message);
    assert(!err.message.includes("\n"));
  }
  for (const re of UNSUPPORTED) {
    assertThrows(() => translateRegex(re), RegexError, `Unsupported regex`);
  }
});

Deno.test("translateRegex() accepts Go 1.22's (?<name>…) groups", () => {
  assertEquals(translateRegex("(?<n>c)").pattern, "^(?:(?:c))$");
});

Deno.test("the expected answers above are Go's, as a real Prometheus evaluates them", async () => {
  // No scrape targets: nothing is ever sent to the unreachable remote write URL.
  const prom = await startPrometheus({
    scrapeTargets: [],
    remoteWriteUrl: "http://127.0.0.1:9/write",
  });
  try {
    const q = (s: string) => JSON.stringify(s);
    const ask = async (expr: string) => {
      const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      return await res.json() as {
        status: string;
        error?: string;
        data?: { result: { metric: Record<string, string> }[] };
      };
    };
    const disagree: string[] = [];
    for (const [re, value, want] of CASES) {
      // m="yes" iff ^(?:re)$ matches value, the label matchers' anchoring.
      const res = await ask(
        `label_replace(label_replace(vector(1), "l", ${q(value)}, "", ""), "m", "yes", "l", ${
          q(re)
        })`,
      );
      const got = res.status === "success" ? res.data!.result[0].metric.m === "yes" : res.error;
      if (got !== want) disagree.push(`${q(re)} on ${q(value)}: Go says ${got}, table ${want}`);
    }
    for (const re of [...INVALID, ...UNSUPPORTED]) {
      const res = await ask(`label_replace(vector(1), "m", "yes", "l", ${q(re)})`);
      const valid = res.status === "success";
      if (valid !== UNSUPPORTED.includes(re)) {
        disagree.push(`${q(re)}: Go says ${valid ? "valid" : res.error}`);
      }
    }
    assertEquals(disagree, []);
  } finally {
    await killAll();
  }
});
