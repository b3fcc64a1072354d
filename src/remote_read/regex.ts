/**
 * Translates a Prometheus label regex (Go's RE2 syntax, `regexp/syntax`
 * with the Perl flags Prometheus compiles with) into an equivalent
 * PostgreSQL advanced regular expression (ARE,
 * https://www.postgresql.org/docs/current/functions-matching.html#POSIX-SYNTAX-DETAILS).
 *
 * Prometheus anchors label regexes at both ends (`^(?:re)$`), so the
 * result is anchored too: `value ~ pattern` holds exactly when Prometheus's
 * matcher would match `value`. The pattern is parsed, not passed through:
 * the two dialects look alike but differ in many places (in ARE `\b` is a
 * backspace, `.` matches a newline, `\d` and `[[:alpha:]]` follow the
 * locale, `\x41B` eats every hex digit, `{` is never literal, embedded
 * options are allowed only at the start, `\1` is a back reference, …).
 *
 * Supported, with Go's meaning:
 * - literals, escaped punctuation, `\a \f \t \n \r \v`, octal `\123`,
 *   `\x7F`, `\x{10FFFF}`, `\Q…\E`;
 * - `.` (no newline unless `s`), `^` `$` `\A` `\z` (text anchors; line
 *   anchors under `m`), `\b` `\B` (ASCII word boundaries);
 * - classes `[…]`, `[^…]` with ranges, escapes, `\d \s \w \D \S \W` and the
 *   ASCII classes `[:alpha:]`, `[:^alpha:]`, … (all ASCII, as in Go);
 * - groups `(…)`, `(?:…)`, `(?P<name>…)`, `(?<name>…)`;
 * - `|`, `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}` (m at most 255, PostgreSQL's
 *   limit) and their non-greedy forms (greediness cannot change whether an
 *   anchored pattern matches);
 * - flags `s`, `m`, `U` anywhere (`(?s)`, `(?m:…)`, …), and `i` only for
 *   the whole expression (a leading `(?i)`), translated to PostgreSQL's own
 *   case-insensitive mode. Case folding then follows PostgreSQL (the
 *   database's locale) rather than Go's Unicode folding tables; for ASCII
 *   they agree.
 *
 * Rejected with a {@linkcode RegexError}: what PostgreSQL cannot express
 * ("Unsupported regex": `i` turned on or off inside the expression, Unicode
 * classes `\pL` `\p{Greek}`, repetition of an anchor or `\b`, repeat
 * counts above 255), and what Prometheus rejects ("Invalid regex": back
 * references, `\C`, `\Z`, unbalanced parentheses, `a**`, bad ranges, an
 * unterminated `\Q`, …).
 *
 * @module
 */

/** A regex that cannot be translated; the message says why (sentence case, one line). */
export class RegexError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RegexError";
  }
}

/** A translated regex. */
export interface TranslatedRegex {
  /** The anchored PostgreSQL pattern (`^(?:…)$`, maybe with a leading `(?i)`). */
  pattern: string;
  /**
   * When the regex is nothing but literal alternatives (`a|bc|`), those
   * strings: `value = ANY(literals)` is then the same test, and can use an
   * index. Null otherwise.
   */
  literals: string[] | null;
}

const MAX_CODE_POINT = 0x10ffff;
/** Largest repeat count PostgreSQL accepts (DUPMAX). */
const PG_MAX_REPEAT = 255;
/** Largest repeat count Go accepts. */
const GO_MAX_REPEAT = 1000;
/** Matches nothing: label values never hold NUL, and this class has everything else. */
const NEVER = "[^\\u0001-\\U0010ffff]";

type Range = [number, number];

const DIGIT: Range[] = [[0x30, 0x39]];
const SPACE: Range[] = [[0x09, 0x0a], [0x0c, 0x0d], [0x20, 0x20]];
const WORD: Range[] = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];

/** Go's ASCII classes, `[:name:]`. */
const POSIX: Record<string, Range[]> = {
  alnum: [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]],
  alpha: [[0x41, 0x5a], [0x61, 0x7a]],
  ascii: [[0x00, 0x7f]],
  blank: [[0x09, 0x09], [0x20, 0x20]],
  cntrl: [[0x00, 0x1f], [0x7f, 0x7f]],
  digit: DIGIT,
  graph: [[0x21, 0x7e]],
  lower: [[0x61, 0x7a]],
  print: [[0x20, 0x7e]],
  punct: [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e]],
  space: [[0x09, 0x0d], [0x20, 0x20]],
  upper: [[0x41, 0x5a]],
  word: WORD,
  xdigit: [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]],
};

const PERL: Record<string, Range[]> = { d: DIGIT, s: SPACE, w: WORD };

/** `(?<=w)(?!w)|(?<!w)(?=w)`: Go's `\b`, with Go's ASCII word characters. */
const W = "[0-9A-Za-z_]";
const WORD_BOUNDARY = `(?:(?<=${W})(?!${W})|(?<!${W})(?=${W}))`;
const NOT_WORD_BOUNDARY = `(?:(?<=${W})(?=${W})|(?<!${W})(?!${W}))`;

interface Flags {
  /** `s`: `.` matches a newline. */
  dotNL: boolean;
  /** `m`: `^` and `$` match at line boundaries. */
  multiLine: boolean;
}

/** What kind of thing an emitted piece is: whether a repetition may follow it. */
type Kind = "atom" | "assertion";

/**
 * Translates a Prometheus (RE2) label regex to an anchored PostgreSQL
 * pattern.
 *
 * @throws {RegexError} when the regex is invalid or uses something
 *   PostgreSQL cannot express; the message names it.
 */
export function translateRegex(re: string): TranslatedRegex {
  return new Translator(re).run();
}

class Translator {
  /** The regex as code points. */
  private readonly s: number[];
  private pos = 0;
  private caseInsensitive = false;
  private depth = 0;

  constructor(private readonly source: string) {
    this.s = Array.from(source, (c) => c.codePointAt(0)!);
  }

  run(): TranslatedRegex {
    // A leading flag group holding `i` makes the whole expression
    // case-insensitive: PostgreSQL takes that only as a prefix of the pattern.
    const flags: Flags = { dotNL: false, multiLine: false };
    const lead = this.leadingFlags();
    if (lead !== null) {
      this.caseInsensitive = lead.i;
      flags.dotNL = lead.s;
      flags.multiLine = lead.m;
    }
    const { text, literals } = this.alternation(flags, true);
    if (this.pos < this.s.length) {
      // Only an unmatched ")" stops the top level early.
      this.fail("unexpected )");
    }
    // NUL never occurs in a label value (nor can PostgreSQL text hold it).
    const plain = !this.caseInsensitive && literals !== null &&
      literals.every((l) => !l.includes("\u0000"));
    return {
      pattern: `${this.caseInsensitive ? "(?i)" : ""}^(?:${text})$`,
      literals: plain ? literals : null,
    };
  }

  private fail(message: string): never {
    throw new RegexError(`Invalid regex "${this.source}": ${message}`);
  }

  private unsupported(message: string): never {
    throw new RegexError(`Unsupported regex "${this.source}": ${message}`);
  }

  private peek(offset = 0): number {
    return this.s[this.pos + offset] ?? -1;
  }

  private startsWith(text: string): boolean {
    for (let i = 0; i < text.length; i++) {
      if (this.peek(i) !== text.charCodeAt(i)) return false;
    }
    return true;
  }

  /** Parses `(?flags)` at the very start; returns the flags or null. */
  private leadingFlags(): { i: boolean; s: boolean; m: boolean } | null {
    if (!this.startsWith("(?")) return null;
    let p = 2;
    const on = { i: false, s: false, m: false };
    while (true) {
      const c = String.fromCodePoint(this.peek(p));
      if (c === "i" || c === "s" || c === "m" || c === "U") {
        if (c !== "U") on[c] = true;
        p++;
      } else if (c === ")" && p > 2) {
        this.pos += p + 1;
        return on;
      } else {
        return null; // some other group; parsed (and checked) later
      }
    }
  }

  /**
   * alternation := concat ('|' concat)*. Returns the ARE text and, at the
   * top level, the literal alternatives when every branch is a plain literal.
   */
  private alternation(flags: Flags, top: boolean): { text: string; literals: string[] | null } {
    const branches: string[] = [];
    let literals: string[] | null = top ? [] : null;
    // Flags set by `(?s)` inside a group last until the group ends, across `|`.
    const f = { ...flags };
    while (true) {
      const branch = this.concat(f, literals !== null);
      branches.push(branch.text);
      if (literals !== null) {
        if (branch.literal === null) literals = null;
        else literals.push(branch.literal);
      }
      if (this.peek() === 0x7c /* | */) {
        this.pos++;
        continue;
      }
      break;
    }
    return { text: branches.join("|"), literals };
  }

  /** concat := piece*; stops at `|`, `)` or the end. */
  private concat(flags: Flags, wantLiteral: boolean): { text: string; literal: string | null } {
    let text = "";
    let literal: string | null = wantLiteral ? "" : null;
    while (this.pos < this.s.length) {
      const c = this.peek();
      if (c === 0x7c || c === 0x29) break; // | )
      if (isRepeatStart(c) || (c === 0x7b && this.repeatAt(this.pos) !== null)) {
        this.fail(`missing argument to repetition operator at offset ${this.pos}`);
      }
      const before = this.pos;
      const piece = this.atom(flags);
      if (piece === null) continue; // a flag group: no output
      let out = piece.text;
      const repeated = this.repetition();
      if (repeated !== null) {
        if (piece.kind === "assertion") {
          this.unsupported(`repetition of an anchor or word boundary at offset ${before}`);
        }
        out = out + repeated;
      }
      if (literal !== null) {
        literal = piece.literal !== undefined && repeated === null ? literal + piece.literal : null;
      }
      text += out;
    }
    return { text, literal };
  }

  /** Parses a repetition operator after an atom, if any; returns its ARE text. */
  private repetition(): string | null {
    const c = this.peek();
    let op: string;
    if (c === 0x2a || c === 0x2b || c === 0x3f) { // * + ?
      op = String.fromCharCode(c);
      this.pos++;
    } else if (c === 0x7b) {
      const r = this.repeatAt(this.pos);
      if (r === null) return null; // a literal "{"
      const [min, max, end] = r;
      if (min > GO_MAX_REPEAT || (max !== undefined && max > GO_MAX_REPEAT)) {
        this.fail(`repeat count above ${GO_MAX_REPEAT} at offset ${this.pos}`);
      }
      if (max !== undefined && max >= 0 && max < min) {
        this.fail(`invalid repeat count {${min},${max}} at offset ${this.pos}`);
      }
      if (min > PG_MAX_REPEAT || (max !== undefined && max > PG_MAX_REPEAT)) {
        this.unsupported(`repeat counts above ${PG_MAX_REPEAT} are not supported by PostgreSQL`);
      }
      op = max === undefined ? `{${min}}` : max < 0 ? `{${min},}` : `{${min},${max}}`;
      this.pos = end;
    } else {
      return null;
    }
    // A non-greedy marker: irrelevant to whether an anchored pattern matches.
    if (this.peek() === 0x3f) this.pos++;
    const n = this.peek();
    if (isRepeatStart(n) || (n === 0x7b && this.repeatAt(this.pos) !== null)) {
      this.fail(`invalid nested repetition operator at offset ${this.pos}`);
    }
    return op;
  }

  /**
   * Reads `{n}`, `{n,}` or `{n,m}` at `at`: [min, max (undefined for {n},
   * -1 for {n,}), end], or null when it is not one (then `{` is a literal,
   * as in Go).
   */
  private repeatAt(at: number): [number, number | undefined, number] | null {
    let p = at + 1;
    const num = (): number | null => {
      const start = p;
      while (this.s[p] >= 0x30 && this.s[p] <= 0x39) p++;
      if (p === start) return null;
      const digits = String.fromCodePoint(...this.s.slice(start, p));
      return digits.length > 8 ? Number.MAX_SAFE_INTEGER : Number(digits);
    };
    const min = num();
    if (min === null) return null;
    let max: number | undefined;
    if (this.s[p] === 0x2c) { // ,
      p++;
      if (this.s[p] === 0x7d) {
        max = -1;
      } else {
        const m = num();
        if (m === null) return null;
        max = m;
      }
    }
    if (this.s[p] !== 0x7d) return null;
    return [min, max, p + 1];
  }

  /**
   * Parses one atom. Returns its ARE text, whether a repetition may follow,
   * and its literal text when it is a single literal character; null for a
   * flag group, which only changes `flags`.
   */
  private atom(
    flags: Flags,
  ): { text: string; kind: Kind; literal?: string } | null {
    const c = this.peek();
    switch (c) {
      case 0x28: // (
        return this.group(flags);
      case 0x5b: // [
        return { text: this.classExpr(), kind: "atom" };
      case 0x2e: // .
        this.pos++;
        return { text: flags.dotNL ? "." : "[^\\u000a]", kind: "atom" };
      case 0x5e: // ^
        this.pos++;
        return { text: flags.multiLine ? "(?:^|(?<=\\u000a))" : "^", kind: "assertion" };
      case 0x24: // $
        this.pos++;
        return { text: flags.multiLine ? "(?:$|(?=\\u000a))" : "$", kind: "assertion" };
      case 0x5c: // backslash
        return this.escapeAtom();
      default:
        this.pos++;
        return { text: literalText(c), kind: "atom", literal: String.fromCodePoint(c) };
    }
  }

  private group(flags: Flags): { text: string; kind: Kind } | null {
    const start = this.pos;
    this.pos++; // (
    if (this.peek() === 0x3f) { // ?
      if (
        this.startsWith("?P<") || (this.startsWith("?<") && this.peek(2) !== 0x3d &&
          this.peek(2) !== 0x21)
      ) {
        // Named capture: the name is [A-Za-z0-9_]+ in Go.
        this.pos += this.peek(1) === 0x50 ? 3 : 2;
        const nameStart = this.pos;
        while (isWordChar(this.peek())) this.pos++;
        if (this.pos === nameStart || this.peek() !== 0x3e) {
          this.fail(`invalid named capture at offset ${start}`);
        }
        this.pos++;
        return this.groupBody(flags, start);
      }
      // Flags: (?flags) or (?flags:re), flags = [imsU]* ('-' [imsU]*)?
      this.pos++;
      const f = { ...flags };
      let negate = false;
      let any = false;
      while (true) {
        const ch = this.peek();
        if (ch === 0x2d && !negate) { // -
          negate = true;
          any = false;
          this.pos++;
          continue;
        }
        if (ch === 0x69) { // i
          this.unsupported(
            "the case-insensitive flag (?i) is only supported at the start of the expression",
          );
        }
        if (ch === 0x73 || ch === 0x6d || ch === 0x55) { // s m U
          if (ch === 0x73) f.dotNL = !negate;
          if (ch === 0x6d) f.multiLine = !negate;
          any = true;
          this.pos++;
          continue;
        }
        if ((ch === 0x29 || ch === 0x3a) && (any || !negate)) {
          // "(?:" and "(?)" have no flags; "(?-)" and "(?-:" are errors, as in Go.
          this.pos++;
          if (ch === 0x29) {
            // (?flags): the flags hold until the end of the enclosing group.
            flags.dotNL = f.dotNL;
            flags.multiLine = f.multiLine;
            return null;
          }
          return this.groupBody(f, start);
        }
        this.fail(`invalid or unsupported group at offset ${start}`);
      }
    }
    return this.groupBody(flags, start);
  }

  private groupBody(flags: Flags, start: number): { text: string; kind: Kind } {
    this.depth++;
    const inner = this.alternation(flags, false);
    this.depth--;
    if (this.peek() !== 0x29) this.fail(`missing ) for the group at offset ${start}`);
    this.pos++;
    return { text: `(?:${inner.text})`, kind: "atom" };
  }

  /** An escape outside a class. */
  private escapeAtom(): { text: string; kind: Kind; literal?: string } | null {
    const start = this.pos;
    const e = this.peek(1);
    if (e < 0) this.fail("trailing backslash");
    switch (String.fromCodePoint(e)) {
      case "A":
        this.pos += 2;
        return { text: "^", kind: "assertion" };
      case "z":
        this.pos += 2;
        return { text: "$", kind: "assertion" };
      case "b":
        this.pos += 2;
        return { text: WORD_BOUNDARY, kind: "assertion" };
      case "B":
        this.pos += 2;
        return { text: NOT_WORD_BOUNDARY, kind: "assertion" };
      case "d":
      case "s":
      case "w":
      case "D":
      case "S":
      case "W": {
        this.pos += 2;
        const lower = String.fromCodePoint(e).toLowerCase();
        const set = e >= 0x61 ? PERL[lower] : complement(PERL[lower]);
        return { text: classText(set, false), kind: "atom" };
      }
      case "p":
      case "P":
        this.unsupported(`Unicode classes (\\p, \\P) at offset ${start}`);
        break;

      case "Q": {
        // \Q…\E: everything up to \E (or the end) is literal.
        this.pos += 2;
        let text = "";
        let literal = "";
        while (this.pos < this.s.length && !this.startsWith("\\E")) {
          const ch = this.s[this.pos++];
          text += literalText(ch);
          literal += String.fromCodePoint(ch);
        }
        // Prometheus wraps the regex as ^(?:…)$: an unterminated \Q would
        // swallow the closing parenthesis, so Prometheus rejects it.
        if (!this.startsWith("\\E")) this.fail(`missing \\E after \\Q at offset ${start}`);
        this.pos += 2;
        // Empty: nothing to emit (a repetition right after it is then an
        // error, as in Go). Otherwise each character is one ARE atom, so a
        // repetition after it applies to the last character only, as in Go.
        if (literal === "") return null;
        return { text, kind: "atom", literal };
      }
    }
    const ch = this.escapedChar();
    return { text: literalText(ch), kind: "atom", literal: String.fromCodePoint(ch) };
  }

  /**
   * Reads a character escape at `pos` (the backslash): Go's parseEscape.
   * Returns the code point.
   */
  private escapedChar(): number {
    const start = this.pos;
    this.pos++; // backslash
    const c = this.peek();
    if (c < 0) this.fail("trailing backslash");
    this.pos++;
    // Octal: \0, \0nn, \nnn; a single \1-\7 would be a back reference.
    if (c >= 0x30 && c <= 0x37) {
      const next = this.peek();
      if (c !== 0x30 && !(next >= 0x30 && next <= 0x37)) {
        this.fail(`back references are not supported (offset ${start})`);
      }
      let v = c - 0x30;
      for (let i = 1; i < 3 && this.peek() >= 0x30 && this.peek() <= 0x37; i++) {
        v = v * 8 + this.peek() - 0x30;
        this.pos++;
      }
      return v;
    }
    switch (c) {
      case 0x78: { // x
        if (this.peek() === 0x7b) { // {
          this.pos++;
          const hexStart = this.pos;
          while (isHex(this.peek())) this.pos++;
          if (this.peek() !== 0x7d || this.pos === hexStart) {
            this.fail(`invalid escape \\x{…} at offset ${start}`);
          }
          const v = parseInt(String.fromCodePoint(...this.s.slice(hexStart, this.pos)), 16);
          this.pos++;
          if (!(v <= MAX_CODE_POINT)) this.fail(`escape \\x{…} above U+10FFFF at offset ${start}`);
          return v;
        }
        if (!isHex(this.peek()) || !isHex(this.peek(1))) {
          this.fail(`invalid escape \\x at offset ${start}`);
        }
        const v = parseInt(String.fromCodePoint(this.peek(), this.peek(1)), 16);
        this.pos += 2;
        return v;
      }
      case 0x61: // a
        return 0x07;
      case 0x66: // f
        return 0x0c;
      case 0x6e: // n
        return 0x0a;
      case 0x72: // r
        return 0x0d;
      case 0x74: // t
        return 0x09;
      case 0x76: // v
        return 0x0b;
    }
    // Escaped ASCII punctuation is itself; any other escape is an error in Go.
    if (c < 0x80 && !isAlnum(c)) return c;
    this.fail(`invalid escape \\${String.fromCodePoint(c)} at offset ${start}`);
  }

  /** A bracket expression `[…]`; returns its ARE text. */
  private classExpr(): string {
    const start = this.pos;
    this.pos++; // [
    let negated = false;
    if (this.peek() === 0x5e) { // ^
      negated = true;
      this.pos++;
    }
    let set: Range[] = [];
    let first = true;
    while (true) {
      const c = this.peek();
      if (c < 0) this.fail(`missing ] for the class at offset ${start}`);
      if (c === 0x5d && !first) break; // ]
      first = false;
      // [:alpha:] and [:^alpha:]
      if (c === 0x5b && this.peek(1) === 0x3a) {
        const named = this.namedClass();
        if (named !== null) {
          set = set.concat(named);
          continue;
        }
      }
      if (c === 0x5c) { // backslash
        const e = this.peek(1);
        if (e === 0x70 || e === 0x50) {
          this.unsupported(`Unicode classes (\\p, \\P) at offset ${this.pos}`);
        }
        if (e === 0x64 || e === 0x73 || e === 0x77 || e === 0x44 || e === 0x53 || e === 0x57) {
          // \d \s \w \D \S \W
          this.pos += 2;
          const lower = String.fromCharCode(e).toLowerCase();
          set = set.concat(e >= 0x61 ? PERL[lower] : complement(PERL[lower]));
          continue;
        }
      }
      const lo = this.classChar();
      let hi = lo;
      // "a-" before "]" is a and "-"; otherwise "-" makes a range.
      if (this.peek() === 0x2d && this.peek(1) !== 0x5d && this.peek(1) >= 0) {
        this.pos++;
        hi = this.classChar();
        if (hi < lo) {
          this.fail(`invalid class range at offset ${start}`);
        }
      }
      set.push([lo, hi]);
    }
    this.pos++; // ]
    return classText(normalize(set), negated);
  }

  /** One character in a class: a plain character or an escape. */
  private classChar(): number {
    const c = this.peek();
    if (c < 0) this.fail("missing ] for a class");
    if (c === 0x5c) return this.escapedChar();
    this.pos++;
    return c;
  }

  /** `[:name:]` or `[:^name:]` at `pos`; null when it is not one (then "[" is a literal). */
  private namedClass(): Range[] | null {
    // As in Go: the name runs to the next ":]"; without one, "[" is a literal.
    let end = this.pos + 2;
    while (end + 1 < this.s.length && !(this.s[end] === 0x3a && this.s[end + 1] === 0x5d)) end++;
    if (end + 1 >= this.s.length) return null;
    let name = String.fromCodePoint(...this.s.slice(this.pos + 2, end));
    const neg = name.startsWith("^");
    if (neg) name = name.slice(1);
    const set = Object.hasOwn(POSIX, name) ? POSIX[name] : undefined;
    if (set === undefined) this.fail(`invalid character class [:${name}:]`);
    this.pos = end + 2;
    return neg ? complement(set) : set;
  }
}

function isRepeatStart(c: number): boolean {
  return c === 0x2a || c === 0x2b || c === 0x3f; // * + ?
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function isWordChar(c: number): boolean {
  return isAlnum(c) || c === 0x5f;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** One literal character as ARE text, outside a bracket expression. */
function literalText(c: number): string {
  if (c === 0) return NEVER;
  if (isAlnum(c) || c >= 0x80) return String.fromCodePoint(c);
  if (c >= 0x20 && c < 0x7f) return "\\" + String.fromCharCode(c);
  return charEscape(c);
}

/** `\uXXXX` or `\UXXXXXXXX`: a character entry escape, valid in and out of brackets. */
function charEscape(c: number): string {
  return c <= 0xffff
    ? "\\u" + c.toString(16).padStart(4, "0")
    : "\\U" + c.toString(16).padStart(8, "0");
}

/** A character as it appears in a bracket expression. */
function classChar(c: number): string {
  return isAlnum(c) ? String.fromCharCode(c) : charEscape(c);
}

/** Sorts and merges ranges; drops NUL and surrogates, which no label value holds. */
function normalize(set: Range[]): Range[] {
  const cut: Range[] = [];
  for (const [lo, hi] of set) {
    const a = Math.max(lo, 1);
    if (a > hi) continue;
    if (hi < 0xd800 || a > 0xdfff) cut.push([a, hi]);
    else {
      if (a < 0xd800) cut.push([a, 0xd7ff]);
      if (hi > 0xdfff) cut.push([0xe000, hi]);
    }
  }
  cut.sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const r of cut) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

/** Every code point (from 1) not in `set`. */
function complement(set: Range[]): Range[] {
  const out: Range[] = [];
  let next = 1;
  for (const [lo, hi] of normalize(set)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

/**
 * A bracket expression for `set` (negated when `negated`). A negated class
 * stays a negated bracket rather than an explicit complement so that, under
 * a whole-expression `(?i)`, PostgreSQL folds case before negating, as Go
 * does.
 */
function classText(set: Range[], negated: boolean): string {
  const ranges = normalize(set);
  if (ranges.length === 0) return negated ? "[\\u0001-\\U0010ffff]" : NEVER;
  let body = "";
  for (const [lo, hi] of ranges) {
    body += lo === hi ? classChar(lo) : `${classChar(lo)}-${classChar(hi)}`;
  }
  return `[${negated ? "^" : ""}${body}]`;
}
