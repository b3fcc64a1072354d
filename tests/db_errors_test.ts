/**
 * The database-error policy (src/db_errors.ts) on its own: the named
 * SQLSTATE tests, the status of each class, and the cause kept behind the
 * HttpError. Reads and writes using it alike: tests/security/db_error_policy_test.ts.
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import {
  isLockNotAvailable,
  isNoPartition,
  isUniqueViolation,
  mapDbError,
  SQLSTATE,
  sqlState,
  statusFor,
} from "../src/db_errors.ts";
import { BadRequestError, HttpError, UnavailableError } from "../src/errors.ts";

function pgError(code: string, message = `boom ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

Deno.test("sqlState() reads a PostgreSQL error's code and nothing else", () => {
  assertEquals(sqlState(pgError("23505")), "23505");
  assertEquals(sqlState(new Error("plain")), "");
  assertEquals(sqlState(Object.assign(new Error("x"), { code: 42 })), "");
  assertEquals(sqlState(null), "");
  assertEquals(sqlState("a string"), "");
});

Deno.test("the named SQLSTATE tests match their code only", () => {
  assert(isUniqueViolation(pgError(SQLSTATE.UNIQUE_VIOLATION)));
  assert(isNoPartition(pgError(SQLSTATE.CHECK_VIOLATION)));
  assert(isLockNotAvailable(pgError(SQLSTATE.LOCK_NOT_AVAILABLE)));
  for (const other of ["23503", "55006", "08006", ""]) {
    assert(!isUniqueViolation(pgError(other)), other);
    assert(!isNoPartition(pgError(other)), other);
    assert(!isLockNotAvailable(pgError(other)), other);
  }
});

Deno.test("statusFor() is 400 for bad data and program limits, 503 otherwise, an HttpError's own status", () => {
  assertEquals(statusFor(pgError("22P02")), 400);
  assertEquals(statusFor(pgError("54000")), 400);
  assertEquals(statusFor(pgError("23505")), 503);
  assertEquals(statusFor(pgError("57P01")), 503);
  assertEquals(statusFor(new TypeError("socket closed")), 503);
  assertEquals(statusFor(new HttpError(413, "too large")), 413);
});

Deno.test("mapDbError() keeps the database error as the cause and one line of its message", () => {
  const bad = pgError("22021", "invalid byte sequence\nDETAIL: 0xff");
  const e400 = mapDbError(bad, "Cannot store samples", "Database unavailable");
  assert(e400 instanceof BadRequestError);
  assertEquals(e400.message, "Cannot store samples: invalid byte sequence");
  assertEquals(e400.cause, bad);
  const down = pgError("57P01", "terminating connection due to administrator command");
  const e503 = mapDbError(down, "Cannot store samples", "Database unavailable");
  assert(e503 instanceof UnavailableError);
  assertEquals(
    e503.message,
    "Database unavailable: 57P01 terminating connection due to administrator command",
  );
  assertEquals(e503.cause, down);
  const own = new HttpError(413, "Read request selects more than 10 samples");
  assertEquals(mapDbError(own, "x", "y"), own);
});
