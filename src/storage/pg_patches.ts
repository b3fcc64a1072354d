/**
 * The two places where the connector relies on postgres.js internals, kept
 * here so that they are in one module, with their reason, and guarded by
 * tests/storage/pg_patches_test.ts, which fails loudly when postgres.js
 * changes under them. Checked against postgres.js {@linkcode POSTGRES_JS_CHECKED}
 * (the version pinned in deno.json).
 *
 * 1. A COPY's error after the last byte: postgres.js settles a COPY's stream
 *    only on success; an error the server reports after the data (a unique
 *    violation, a dropped connection) reaches the query's internal
 *    `reject`, whose promise already resolved with the stream, and the
 *    stream never finishes. Hooking `reject` makes it reject here instead
 *    of hanging.
 * 2. `autoDestroy`: the COPY stream destroys itself after 'finish', and its
 *    destroy() sends a CopyFail: harmless while the connection is idle, but
 *    it aborts the next COPY when that one was already sent (pipelined) on
 *    the same connection. The stream is done once it has finished, so
 *    autoDestroy is turned off.
 *
 * @module
 */

/** The postgres.js version these patches were checked against. */
export const POSTGRES_JS_CHECKED = "3.4.9";

/** The parts of a postgres.js query that a COPY needs. */
interface CopyQuery {
  reject: (err: unknown) => void;
  writable(): Promise<NodeJS.WritableStream>;
}

/**
 * Runs `COPY … FROM STDIN` with `data` (a query made but not yet awaited,
 * e.g. ``tx`COPY … FROM STDIN (FORMAT binary)` ``) and resolves when the
 * server has committed it, or rejects with the server's error (patch 1).
 */
export async function copyIn(query: unknown, data: Uint8Array): Promise<void> {
  const q = query as CopyQuery;
  const failed = Promise.withResolvers<never>();
  const reject = q.reject;
  q.reject = (err) => {
    failed.reject(err);
    reject(err);
  };
  failed.promise.catch(() => {});
  const stream = await Promise.race([q.writable(), failed.promise]);
  // Patch 2: no CopyFail from an automatic destroy() after 'finish'.
  const state = (stream as unknown as { _writableState?: { autoDestroy?: boolean } })
    ._writableState;
  if (state) state.autoDestroy = false;
  const done = new Promise<void>((resolve, rejectDone) => {
    stream.once("error", rejectDone);
    stream.once("finish", resolve);
  });
  stream.end(data);
  await Promise.race([done, failed.promise]);
}
