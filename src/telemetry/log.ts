/**
 * Structured logs, logfmt (default) or JSON, one line per event on stderr.
 * Values that look like secrets are never passed here: callers log URIs
 * through `redactUri`, and no config value holding a password is logged.
 *
 * Each line carries `caller=<file>:<line>` of the code that logged, as
 * Promscale's lines did (go-kit's `caller`), taken from the stack: the
 * source file's name when run from source or as the compiled executable,
 * the bundle's (`promscale.js`) when run as the one-file bundle.
 */
import type { LogFormat, LogLevel } from "../config.ts";

const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Fields of a log line. */
export type Fields = Record<string, unknown>;

/** A logger writing to a sink (stderr by default). */
export class Logger {
  constructor(
    readonly level: LogLevel = "info",
    readonly format: LogFormat = "logfmt",
    readonly sink: (line: string) => void = (line) => console.error(line),
  ) {}

  debug(msg: string, fields?: Fields): void {
    this.write("debug", msg, fields, this.debug);
  }
  info(msg: string, fields?: Fields): void {
    this.write("info", msg, fields, this.info);
  }
  warn(msg: string, fields?: Fields): void {
    this.write("warn", msg, fields, this.warn);
  }
  error(msg: string, fields?: Fields): void {
    this.write("error", msg, fields, this.error);
  }

  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= LEVELS[this.level];
  }

  log(level: LogLevel, msg: string, fields: Fields = {}): void {
    this.write(level, msg, fields, this.log);
  }

  /** `entry`: the public method called, whose caller is the line's `caller`. */
  private write(
    level: LogLevel,
    msg: string,
    fields: Fields = {},
    entry: (...args: never[]) => void,
  ): void {
    if (!this.enabled(level)) return;
    const ts = new Date().toISOString();
    const at = callerOf(entry);
    if (this.format === "json") {
      this.sink(JSON.stringify({ ts, level, caller: at, msg, ...normalize(fields) }));
      return;
    }
    let line = `ts=${ts} level=${level}${at ? ` caller=${at}` : ""} msg=${logfmtValue(msg)}`;
    for (const [k, v] of Object.entries(normalize(fields))) {
      line += ` ${k}=${logfmtValue(v)}`;
    }
    this.sink(line);
  }
}

/**
 * `file:line` of the frame that called `entry`, from a V8 stack trace
 * (`at fn (file:///…/src/app.ts:93:12)` or `at file:///…/main.ts:10:3`).
 */
function callerOf(entry: (...args: never[]) => void): string | undefined {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, entry);
  const frame = holder.stack?.split("\n")[1];
  const m = frame && /([^\s()/]+):(\d+):\d+\)?\s*$/.exec(frame);
  return m ? `${m[1]}:${m[2]}` : undefined;
}

function normalize(fields: Fields): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    out[k] = v instanceof Error ? v.message : v;
  }
  return out;
}

function logfmtValue(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
  return /^[^\s"=\\]+$/.test(s) ? s : JSON.stringify(s);
}

/** A logger that discards everything (tests). */
export const silentLogger = new Logger("error", "logfmt", () => {});
