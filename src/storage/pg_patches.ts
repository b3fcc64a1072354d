/**
 * The places where the connector relies on postgres.js internals, kept
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
 * 3. A paused socket after `COPY … TO STDOUT` (`copyOut`): the readable
 *    stream's `_read` is called once it has ended, to resume the socket.
 *
 * @module
 */

import type { Sql } from "../../deps.ts";

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

/**
 * Runs `COPY (…) TO STDOUT (FORMAT binary)` on `conn` and returns its
 * whole body. postgres.js hands over one chunk per row: they are copied
 * into one growing buffer from synchronous 'data' events (an async
 * iterator would cost a promise per row).
 *
 * postgres.js (3.4.9) pauses the socket whenever the stream's buffer is
 * full and resumes it only from the stream's `read()`; when the last row
 * fills it, nothing reads again after the end, the socket stays paused,
 * and the connection's next query waits forever (seen with a COPY of
 * 1,800 rows followed by another). Calling that `read()` once the stream
 * has ended resumes the socket (patch 3).
 */
export async function copyOut(conn: Sql, text: string): Promise<Uint8Array> {
  const stream = await conn.unsafe(text).readable();
  const resume = () => (stream as unknown as { _read?: (n: number) => void })._read?.(0);
  let buf = new Uint8Array(1 << 20);
  let len = 0;
  await new Promise<void>((resolve, reject) => {
    stream.on("data", (c: Uint8Array) => {
      if (len + c.length > buf.length) {
        const grown = new Uint8Array(Math.max(buf.length * 2, len + c.length));
        grown.set(buf.subarray(0, len));
        buf = grown;
      }
      buf.set(c, len);
      len += c.length;
    });
    stream.once("end", () => {
      resume();
      resolve();
    });
    stream.once("error", reject);
  });
  return buf.subarray(0, len);
}
