/**
 * One error policy for writes and reads: a database error means the same
 * status whichever path met it. Data errors (SQLSTATE class 22) and program
 * limits (class 54: a statement too complex, too many columns or
 * arguments) can never succeed, so both paths answer 400; everything else
 * is transient (503, Prometheus retries).
 */
import { assertEquals, assertMatch } from "../helpers/assert.ts";
import { HttpError } from "../../src/errors.ts";
import type { Gate } from "../../src/storage/db.ts";
import { mapDbError } from "../../src/db_errors.ts";
import { runQueries } from "../../src/remote_read/querier.ts";
import type { Sql } from "../../deps.ts";

const CODES: [string, number][] = [
  ["22P02", 400], // invalid text representation
  ["2201B", 400], // invalid regular expression
  ["54001", 400], // statement too complex (stack depth limit exceeded)
  ["54011", 400], // too many columns
  ["54023", 400], // too many arguments
  ["57P01", 503], // admin shutdown
  ["08006", 503], // connection failure
  ["53300", 503], // too many connections
  ["57014", 503], // query canceled (statement_timeout)
];

function pgError(code: string): Error {
  return Object.assign(new Error(`boom ${code}\nDETAIL: more`), { code });
}

/** A gate whose database work fails with `err`. */
function failingGate(err: unknown): Gate {
  return { run: () => Promise.reject(err) } as unknown as Gate;
}

async function readStatus(err: unknown): Promise<{ status: number; message: string }> {
  try {
    await runQueries([{ startMs: 0, endMs: 1, matchers: [] }], {
      sql: null as unknown as Sql,
      gate: failingGate(err),
      maxSamples: 10,
    });
  } catch (e) {
    return { status: e instanceof HttpError ? e.status : 500, message: (e as Error).message };
  }
  throw new Error("the read did not fail");
}

Deno.test("reads and writes map database errors alike (class 54 is a 400 on both)", async () => {
  for (const [code, status] of CODES) {
    const write = mapDbError(pgError(code), "Cannot store samples", "Database unavailable");
    const read = await readStatus(pgError(code));
    assertEquals((write as HttpError).status, status, `write, ${code}`);
    assertEquals(read.status, status, `read, ${code}: ${read.message}`);
    assertMatch(read.message, /^[^\n]+$/);
  }
});

Deno.test("an HttpError thrown inside the database work keeps its status on both paths", async () => {
  const limit = new HttpError(413, "Read request selects more than 10 samples");
  assertEquals((await readStatus(limit)).status, 413);
  assertEquals((mapDbError(limit, "x", "y") as HttpError).status, 413);
});
