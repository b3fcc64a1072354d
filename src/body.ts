/**
 * Reading an HTTP request body under limits, for every endpoint that takes
 * one (remote write, remote read). The statuses follow the retry contract:
 * 413 for a body that can never fit, 503 for a client too slow to send it.
 *
 * @module
 */
import { errorMessage, HttpError } from "./errors.ts";

/**
 * Reads the body without ever holding more than `limit` bytes: 413 as soon
 * as Content-Length or the bytes read pass it, 503 when the client is too
 * slow (a body trickled byte by byte must not hold a slot forever).
 * `onChunk` is told the size of each chunk before it is kept, and may throw
 * to refuse it.
 */
export async function readBody(
  req: Request,
  limit: number,
  timeoutMs: number,
  onChunk?: (bytes: number) => void,
): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    throw new HttpError(413, `Request body of ${declared} bytes exceeds limit ${limit}`);
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, timeoutMs);
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        reader.cancel().catch(() => {});
        throw new HttpError(413, `Request body exceeds limit ${limit} bytes`);
      }
      if (onChunk) {
        try {
          onChunk(value.byteLength); // may refuse (memory budget)
        } catch (err) {
          reader.cancel().catch(() => {});
          throw err;
        }
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof HttpError) throw err;
    if (timedOut) throw new HttpError(503, `Request body not received within ${timeoutMs} ms`);
    throw new HttpError(400, `Cannot read request body: ${errorMessage(err)}`);
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) throw new HttpError(503, `Request body not received within ${timeoutMs} ms`);
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}
