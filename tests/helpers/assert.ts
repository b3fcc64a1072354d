/**
 * Tiny assertion helpers on node:assert/strict, named like std's so tests
 * read the same (std/assert lives on JSR, which these machines cannot reach).
 */
import { AssertionError } from "node:assert/strict";

export { AssertionError };
export { deepStrictEqual as assertEquals, default as assert } from "node:assert/strict";
export { notDeepStrictEqual as assertNotEquals } from "node:assert/strict";
export { match as assertMatch } from "node:assert/strict";

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

function checkError<E extends Error>(
  err: unknown,
  what: string,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
): E {
  if (ErrorClass && !(err instanceof ErrorClass)) {
    throw new AssertionError({
      message: `Expected ${what} to throw ${ErrorClass.name}, got: ${String(err)}`,
    });
  }
  if (msgIncludes !== undefined && !String((err as Error)?.message).includes(msgIncludes)) {
    throw new AssertionError({
      message: `Expected error message to include "${msgIncludes}", got: "${
        (err as Error)?.message
      }"`,
    });
  }
  return err as E;
}

/**
 * Asserts that `fn` returns a promise that rejects (optionally with an
 * instance of `ErrorClass` whose message includes `msgIncludes`); returns
 * the error.
 */
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    return checkError(err, "promise", ErrorClass, msgIncludes);
  }
  throw new AssertionError({ message: "Expected promise to reject, but it resolved" });
}

/** Asserts that `fn` throws (optionally a given class and message); returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  ErrorClass?: ErrorClass<E>,
  msgIncludes?: string,
): E {
  try {
    fn();
  } catch (err) {
    return checkError(err, "function", ErrorClass, msgIncludes);
  }
  throw new AssertionError({ message: "Expected function to throw, but it returned" });
}

/** Asserts that `actual` contains `expected`. */
export function assertStringIncludes(actual: string, expected: string, msg?: string): void {
  if (!actual.includes(expected)) {
    throw new AssertionError({
      message: msg ?? `Expected "${actual}" to include "${expected}"`,
    });
  }
}
