/**
 * The one database-error policy of the connector, for writes, reads, the
 * HA path and the health probe alike: which PostgreSQL errors mean what,
 * by SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html),
 * and which HTTP status each failure means for Prometheus's retry logic.
 * The error that caused a status is kept as the new error's `cause`.
 *
 * @module
 */
import { BadRequestError, errorMessage, HttpError, UnavailableError } from "./errors.ts";

/** The SQLSTATE codes the connector acts on. */
export const SQLSTATE = {
  /** 23505: a row with this key exists (a retried request's samples). */
  UNIQUE_VIOLATION: "23505",
  /**
   * 23514: a check failed; for an insert into a partitioned table, "no
   * partition of relation found for row" (retention dropped it).
   */
  CHECK_VIOLATION: "23514",
  /** 55P03: `lock_timeout` or NOWAIT could not take a lock. */
  LOCK_NOT_AVAILABLE: "55P03",
  /** 55006: the object is in use (a database still has sessions). */
  OBJECT_IN_USE: "55006",
} as const;

/** Class 22, data exception: the data itself is wrong. */
const CLASS_DATA_EXCEPTION = "22";
/** Class 54, program limit exceeded (an index row too large, too many columns). */
const CLASS_PROGRAM_LIMIT = "54";

/** The SQLSTATE of a PostgreSQL error, or "" for anything else. */
export function sqlState(err: unknown): string {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? code : "";
}

/** A unique violation: the rows exist already (a retried request). */
export function isUniqueViolation(err: unknown): boolean {
  return sqlState(err) === SQLSTATE.UNIQUE_VIOLATION;
}

/** No partition for a row: a partition the writer had cached was dropped. */
export function isNoPartition(err: unknown): boolean {
  return sqlState(err) === SQLSTATE.CHECK_VIOLATION;
}

/** A lock could not be taken in time (another transaction holds it). */
export function isLockNotAvailable(err: unknown): boolean {
  return sqlState(err) === SQLSTATE.LOCK_NOT_AVAILABLE;
}

/**
 * The status a failure of database work means. An HttpError (a 413 or 503
 * of our own thrown inside the database work) keeps its status. Bad data
 * (class 22) and program limits (class 54) can never succeed: 400, since a
 * 503 would make Prometheus retry the request forever, blocking its queue.
 * Anything else (connection refused or lost, timeouts, server shutting
 * down, …) is transient: 503.
 */
export function statusFor(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  const code = sqlState(err);
  if (code.startsWith(CLASS_DATA_EXCEPTION) || code.startsWith(CLASS_PROGRAM_LIMIT)) return 400;
  return 503;
}

/**
 * Turns a failure of database work into the HttpError it means (see
 * {@linkcode statusFor}), with the failure as its `cause`. `what` begins
 * the 400's message, `unavailable` the 503's; an HttpError is returned as
 * it is.
 */
export function mapDbError(err: unknown, what: string, unavailable: string): HttpError {
  if (err instanceof HttpError) return err;
  const code = sqlState(err);
  const msg = errorMessage(err).split("\n")[0];
  if (statusFor(err) === 400) return new BadRequestError(`${what}: ${msg}`, { cause: err });
  return new UnavailableError(`${unavailable}: ${code ? code + " " : ""}${msg}`, { cause: err });
}
