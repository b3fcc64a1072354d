/**
 * Structured logs, logfmt (default) or JSON, one line per event on stderr.
 * Values that look like secrets are never passed here: callers log URIs
 * through `redactUri`, and no config value holding a password is logged.
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
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.log("error", msg, fields);
  }

  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= LEVELS[this.level];
  }

  log(level: LogLevel, msg: string, fields: Fields = {}): void {
    if (!this.enabled(level)) return;
    const ts = new Date().toISOString();
    if (this.format === "json") {
      this.sink(JSON.stringify({ ts, level, msg, ...normalize(fields) }));
      return;
    }
    let line = `ts=${ts} level=${level} msg=${logfmtValue(msg)}`;
    for (const [k, v] of Object.entries(normalize(fields))) {
      line += ` ${k}=${logfmtValue(v)}`;
    }
    this.sink(line);
  }
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
