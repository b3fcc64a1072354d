/**
 * Serves PGlite (one PostgreSQL backend, in WebAssembly, single-threaded)
 * over the PostgreSQL wire protocol to several clients: the connector's
 * postgres.js pool and, opt-in, `psql` or `pg_dump` on loopback.
 *
 * Why not `@electric-sql/pglite-socket`: it queues single protocol messages
 * from all clients into the one backend, so the Parse/Bind/Execute of two
 * postgres.js connections interleave and a transaction of one client sees
 * the statements of another; and it passes `COPY … FROM STDIN` through a
 * message at a time, on which PGlite's backend reads end-of-input and exits
 * (measured: "Program terminated with exit(1)", the database is gone).
 *
 * Here a client owns the backend for a whole turn: from its first message
 * until the backend is idle again (ReadyForQuery "I", no extended-protocol
 * sequence open, nothing more buffered). A transaction is therefore never
 * interleaved with another client's statements, which PostgreSQL's own
 * locking would otherwise provide. A `COPY … FROM STDIN` sent as a simple
 * query is answered here (CopyInResponse), its data buffered until
 * CopyDone/CopyFail, and the whole exchange handed to PGlite in one call.
 *
 * All clients share the one backend session. Advisory locks therefore
 * never block one client on another (they are re-entrant within a
 * session): the connector's own (migrations, retention, the HA fences)
 * order several connectors, and one connector's transactions are already
 * ordered by the turns. A client's SET lasts until it disconnects
 * (`resetOnClose`). LISTEN/NOTIFY is not used by the connector.
 *
 * Protocol reference: https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** The part of PGlite this module uses. */
export interface ProtocolBackend {
  execProtocolRaw(message: Uint8Array, options?: { syncToFs?: boolean }): Promise<Uint8Array>;
}

/** Options of `serveWire`. */
export interface WireOptions {
  /** A client holding the backend inside a transaction, silent for this long, is rolled back and closed. */
  idleInTransactionMs: number;
  /** Largest `COPY … FROM STDIN` buffered (bytes). */
  maxCopyBytes: number;
  /** RESET ALL when a client of this listener disconnects (users' SETs must not stay). */
  resetOnClose: boolean;
  /** The backend failed (PGlite exited): nothing can be served any more. */
  onFatal(err: unknown): void;
  /** A client's session ended in an error worth a log line. */
  onClientError?(err: unknown): void;
}

/** A running listener; `close()` stops accepting and closes its clients. */
export interface WireServer {
  /** "127.0.0.1:5433" or the socket's path. */
  address: string;
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const PROTOCOL_3 = 196608;
const MAX_STARTUP = 10_000;

/**
 * One turn at a time on the backend, shared by every listener over the same
 * PGlite. FIFO, so no client starves.
 */
export class BackendTurns {
  #tail: Promise<void> = Promise.resolve();
  #dead: unknown = null;

  constructor(readonly backend: ProtocolBackend) {}

  /** Waits for the backend; resolves with the function that releases it. */
  acquire(): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((r) => release = r);
    const before = this.#tail;
    this.#tail = before.then(() => mine);
    return before.then(() => release);
  }

  /** Runs protocol messages; a throw means PGlite is gone for good. */
  async exec(message: Uint8Array): Promise<Uint8Array> {
    if (this.#dead !== null) throw this.#dead;
    try {
      return await this.backend.execProtocolRaw(message);
    } catch (err) {
      this.#dead = err;
      throw err;
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function int32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset + at, 4).getInt32(0);
}

/** A backend message: type byte, length, body. */
function backendMessage(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, 4 + body.length);
  out.set(body, 5);
  return out;
}

/** An ErrorResponse with severity, SQLSTATE and message. */
export function errorResponse(
  severity: "ERROR" | "FATAL",
  code: string,
  message: string,
): Uint8Array {
  const enc = new TextEncoder();
  const field = (t: string, v: string) => [t.charCodeAt(0), ...enc.encode(v), 0];
  return backendMessage(
    "E",
    new Uint8Array([
      ...field("S", severity),
      ...field("V", severity),
      ...field("C", code),
      ...field("M", message),
      0,
    ]),
  );
}

/**
 * Whether a simple query is a `COPY … FROM STDIN`, and then whether binary.
 * Only the statement's start is looked at: comments and a leading WITH are
 * not supported (postgres.js, psql's \copy and pg_dump's output all begin
 * with COPY).
 */
export function copyFromStdin(query: string): { binary: boolean } | null {
  const m = /^\s*copy\s[\s\S]*?\bfrom\s+stdin\b([\s\S]*)$/i.exec(query);
  if (m === null) return null;
  return { binary: /\bbinary\b/i.test(m[1]) || /^\s*copy\s+binary\b/i.test(query) };
}

/** Walks the backend's output: the last transaction status, and the output without the first CopyInResponse when asked. */
export function scanOutput(
  out: Uint8Array,
  dropCopyIn: boolean,
): { out: Uint8Array; status: string | null } {
  let status: string | null = null;
  let at = 0;
  let cut: [number, number] | null = null;
  while (at + 5 <= out.length) {
    const type = out[at];
    const len = int32(out, at + 1);
    if (len < 4 || at + 1 + len > out.length) break;
    if (type === 0x5a /* Z */ && len === 5) status = String.fromCharCode(out[at + 5]);
    if (dropCopyIn && cut === null && type === 0x47 /* G */) cut = [at, at + 1 + len];
    at += 1 + len;
  }
  if (cut === null) return { out, status };
  return { out: concat([out.subarray(0, cut[0]), out.subarray(cut[1])]), status };
}

/** Serves one client connection until it closes. */
class Session {
  #buf: Uint8Array = new Uint8Array(0);
  #started = false;
  #release: (() => void) | null = null;
  #status = "I";
  #openExtended = false;
  #copy: { parts: Uint8Array[]; size: number } | null = null;
  #closed = false;

  constructor(
    readonly conn: Deno.Conn,
    readonly turns: BackendTurns,
    readonly o: WireOptions,
  ) {}

  async run(): Promise<void> {
    const chunk = new Uint8Array(64 * 1024);
    try {
      while (!this.#closed) {
        const n = await this.#read(chunk);
        if (n === null) break;
        this.#buf = this.#buf.length ? concat([this.#buf, chunk.slice(0, n)]) : chunk.slice(0, n);
        await this.#drain();
        if (!this.#busy()) this.#releaseTurn();
      }
    } catch (err) {
      if (!this.#closed) this.o.onClientError?.(err);
    } finally {
      await this.#cleanup();
    }
  }

  /** Reads; while holding the backend inside a transaction, at most idleInTransactionMs. */
  async #read(chunk: Uint8Array): Promise<number | null> {
    if (this.#release === null) return await this.conn.read(chunk);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<"idle">((r) =>
      timer = setTimeout(() => r("idle"), this.o.idleInTransactionMs)
    );
    try {
      const got = await Promise.race([this.conn.read(chunk), idle]);
      if (got !== "idle") return got;
    } finally {
      clearTimeout(timer);
    }
    await this.#write(
      errorResponse(
        "FATAL",
        "25P03",
        `terminating connection: idle in transaction for ${this.o.idleInTransactionMs} ms ` +
          "while holding the embedded database (every other client was waiting)",
      ),
    ).catch(() => {});
    this.#closed = true;
    return null;
  }

  /** Holding the backend is needed while a transaction or an extended-protocol sequence is open. */
  #busy(): boolean {
    return this.#status !== "I" || this.#openExtended;
  }

  async #turn(): Promise<void> {
    if (this.#release === null) this.#release = await this.turns.acquire();
  }

  #releaseTurn(): void {
    const r = this.#release;
    this.#release = null;
    r?.();
  }

  async #write(b: Uint8Array): Promise<void> {
    let at = 0;
    while (at < b.length) at += await this.conn.write(b.subarray(at));
  }

  /** Runs messages on the backend and forwards its answer. */
  async #exec(message: Uint8Array, dropCopyIn = false): Promise<void> {
    await this.#turn();
    let out: Uint8Array;
    try {
      out = await this.turns.exec(message);
    } catch (err) {
      this.o.onFatal(err);
      this.#closed = true;
      throw err;
    }
    const scanned = scanOutput(out, dropCopyIn);
    if (scanned.status !== null) this.#status = scanned.status;
    if (scanned.out.length) await this.#write(scanned.out);
  }

  /** Handles every complete message in the buffer. */
  async #drain(): Promise<void> {
    const batch: Uint8Array[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const m = concat(batch);
      batch.length = 0;
      await this.#exec(m);
    };
    while (!this.#closed) {
      if (!this.#started) {
        if (this.#buf.length < 8) break;
        const len = int32(this.#buf, 0);
        if (len < 8 || len > MAX_STARTUP) {
          this.#closed = true;
          break;
        }
        if (this.#buf.length < len) break;
        const msg = this.#buf.slice(0, len);
        this.#buf = this.#buf.slice(len);
        const code = int32(msg, 4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          await this.#write(new TextEncoder().encode("N")); // no TLS on loopback
        } else if (code === PROTOCOL_3) {
          this.#started = true;
          await this.#exec(msg);
        } else {
          // CancelRequest (not supported: a turn cannot be interrupted) or unknown.
          this.#closed = true;
        }
        continue;
      }
      if (this.#buf.length < 5) break;
      const len = int32(this.#buf, 1);
      if (len < 4) {
        this.#closed = true;
        break;
      }
      if (this.#buf.length < 1 + len) break;
      const msg = this.#buf.slice(0, 1 + len);
      this.#buf = this.#buf.slice(1 + len);
      const type = String.fromCharCode(msg[0]);
      if (this.#copy !== null) {
        if (type === "d") {
          this.#copy.size += msg.length;
          if (this.#copy.size > this.o.maxCopyBytes) {
            this.#copy = null;
            await this.#write(
              errorResponse(
                "FATAL",
                "54000",
                `COPY FROM STDIN larger than ${this.o.maxCopyBytes} bytes; the embedded ` +
                  "database buffers it whole: split it",
              ),
            );
            this.#closed = true;
            break;
          }
          this.#copy.parts.push(msg);
        } else if (type === "c" || type === "f") {
          this.#copy.parts.push(msg);
          const m = concat(this.#copy.parts);
          this.#copy = null;
          await this.#exec(m, true);
        }
        // Flush and Sync during COPY are ignored, as PostgreSQL does.
        continue;
      }
      if (type === "X") {
        this.#closed = true;
        break;
      }
      if (type === "Q") {
        const text = new TextDecoder().decode(msg.subarray(5, msg.length - 1));
        const copy = copyFromStdin(text);
        if (copy !== null) {
          await flush();
          this.#copy = { parts: [msg], size: 0 };
          // CopyInResponse: overall format, no per-column formats (clients
          // take the format from the first field).
          await this.#write(backendMessage("G", new Uint8Array([copy.binary ? 1 : 0, 0, 0])));
          continue;
        }
        this.#openExtended = false;
      } else if (type === "S") {
        this.#openExtended = false;
      } else {
        this.#openExtended = true;
      }
      batch.push(msg);
    }
    await flush();
  }

  /** Leaves the backend as a fresh session would find it. */
  async #cleanup(): Promise<void> {
    this.#closed = true;
    try {
      if (this.#started && (this.#busy() || this.o.resetOnClose)) {
        await this.#turn();
        const enc = new TextEncoder();
        const q = (s: string) => {
          const b = enc.encode(s + "\0");
          return backendMessage("Q", b);
        };
        const parts: Uint8Array[] = [];
        if (this.#openExtended) parts.push(backendMessage("S", new Uint8Array()));
        if (this.#status !== "I") parts.push(q("ROLLBACK"));
        if (this.o.resetOnClose) parts.push(q("RESET ALL"));
        if (parts.length) await this.turns.exec(concat(parts)).catch((err) => this.o.onFatal(err));
      }
    } finally {
      this.#releaseTurn();
      try {
        this.conn.close();
      } catch {
        // already closed
      }
    }
  }

  close(): void {
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** Accepts clients on `listener` and serves each over the shared backend. */
export function serveWire(
  listener: Deno.Listener,
  turns: BackendTurns,
  o: WireOptions,
): WireServer {
  const sessions = new Set<Session>();
  const running = new Set<Promise<void>>();
  const accepting = (async () => {
    for await (const conn of listener) {
      if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
      const s = new Session(conn, turns, o);
      sessions.add(s);
      const p = s.run().finally(() => {
        sessions.delete(s);
        running.delete(p);
      });
      running.add(p);
    }
  })().catch(() => {});
  const addr = listener.addr;
  const address = addr.transport === "unix"
    ? addr.path
    : `${(addr as Deno.NetAddr).hostname}:${(addr as Deno.NetAddr).port}`;
  return {
    address,
    close: async () => {
      try {
        listener.close();
      } catch {
        // already closed
      }
      await accepting;
      for (const s of sessions) s.close();
      await Promise.allSettled([...running]);
    },
  };
}
