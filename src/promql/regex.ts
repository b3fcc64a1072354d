/**
 * RE2 (Go) regexes of PromQL as JavaScript regexes, for what runs in memory:
 * `label_replace()` and the parser's "matches the empty string" check.
 * Selector regexes run in PostgreSQL instead, translated by
 * `src/remote_read/regex.ts`, which is also what validates them.
 *
 * Handled: named groups `(?P<n>…)`, a leading flag group `(?i)`, `(?s)`,
 * `(?m)` (JS flags), `\A` and `\z`. Other RE2-only syntax makes the regex
 * fail to compile here (null).
 *
 * @module
 */

/** The fully anchored JS regex for an RE2 regex, or null when JS cannot compile it. */
export function anchoredRegex(re: string): RegExp | null {
  let flags = "";
  let body = re;
  const lead = /^\(\?([imsU]+)\)/.exec(body);
  if (lead) {
    if (lead[1].includes("i")) flags += "i";
    if (lead[1].includes("s")) flags += "s";
    if (lead[1].includes("m")) flags += "m";
    body = body.slice(lead[0].length);
  }
  body = body.replaceAll("(?P<", "(?<").replaceAll("\\A", "^").replaceAll("\\z", "$");
  try {
    return new RegExp(`^(?:${body})$`, flags);
  } catch {
    return null;
  }
}
