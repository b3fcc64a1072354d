/**
 * Decompression bombs are refused without allocating past the limit: a
 * snappy header declaring 4 GiB (alone, or followed by a stream that really
 * expands to hundreds of MiB), a stream expanding past the length its
 * header declares, and a protobuf declaring a huge field length, each get a
 * 400 with a one-line reason, and the connector's peak resident memory
 * (VmHWM, /proc/<pid>/status) grows by far less than the expansion a naive
 * decoder would write. Bodies over --web.max-request-size get 413.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { nodeExporterSeries, uvarint, writeRequestBody } from "../helpers/payload.ts";
import { killAll, processMemory, startConnector } from "../helpers/procs.ts";

const MiB = 1024 * 1024;
const DECODED_LIMIT = 8 * MiB;
/** How far the big bombs really expand: what a decoder without limits would write. */
const EXPANSION = 512 * MiB;
/** Allowed growth of the peak RSS while the bombs are served. */
const RSS_GROWTH_LIMIT = 160 * MiB;

/**
 * A snappy block: header declaring `declared` bytes, a one-byte literal,
 * then copies of 64 bytes at offset 1 (3 bytes each) until the stream
 * expands to `expandTo` bytes: the best ratio snappy allows (~21x).
 */
function snappyBomb(declared: number, expandTo: number): Uint8Array<ArrayBuffer> {
  const head = uvarint(declared);
  const copies = Math.floor((expandTo - 1) / 64);
  const out = new Uint8Array(head.length + 2 + copies * 3);
  out.set(head, 0);
  let o = head.length;
  out[o++] = 0x00; // literal, length 1
  out[o++] = 0x00;
  for (let i = 0; i < copies; i++) {
    out[o++] = (63 << 2) | 2; // copy with 2-byte offset, length 64
    out[o++] = 1;
    out[o++] = 0;
  }
  return out;
}

/** Snappy of raw bytes as one literal (valid stream, no compression). */
function snappyLiteral(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const n = raw.length - 1;
  const lenBytes = n < 60 ? [] : n < 256 ? [n] : n < 65536 ? [n & 0xff, n >> 8] : [
    n & 0xff,
    (n >> 8) & 0xff,
    n >> 16,
  ];
  const tag = n < 60 ? n << 2 : (59 + lenBytes.length) << 2;
  return new Uint8Array([...uvarint(raw.length), tag, ...lenBytes, ...raw]);
}

async function post(url: string, body: BodyInit, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/write`, {
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf",
      ...headers,
    },
    body,
    signal: AbortSignal.timeout(60_000),
  });
  return { status: res.status, text: await res.text() };
}

Deno.test({
  name: "decompression bombs get 400 without allocating past the limit",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("fuzz_bombs");
    try {
      const connector = await startConnector({
        dbUri: db.uri,
        args: [
          "--web.max-decoded-size",
          String(DECODED_LIMIT),
          "--web.max-request-size",
          String(32 * MiB),
          "--db.connections-max",
          "2",
        ],
      });
      const pid = connector.proc.pid;
      // Warm up: normal writes, and a large body that is refused after
      // decompression, so the baseline includes reading big bodies.
      for (let i = 0; i < 3; i++) {
        assertEquals(
          (await post(
            connector.url,
            writeRequestBody(nodeExporterSeries(500, 1e12 + i)) as Uint8Array<ArrayBuffer>,
          )).status,
          204,
        );
      }
      const zeros = snappyBomb(DECODED_LIMIT, DECODED_LIMIT); // expands to zeros: bad protobuf
      assertEquals((await post(connector.url, zeros)).status, 400);
      const before = processMemory(pid);

      const cases: { name: string; body: Uint8Array<ArrayBuffer>; reason: RegExp }[] = [
        {
          name: "header declaring 4 GiB, nothing behind it",
          body: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00]),
          reason: /snappy length 4294967295 exceeds limit 8388608/,
        },
        {
          name: `header declaring 4 GiB, stream expanding to ${EXPANSION / MiB} MiB`,
          body: snappyBomb(0xffffffff, EXPANSION),
          reason: /snappy length 4294967295 exceeds limit/,
        },
        {
          name: `header at the limit, stream expanding to ${EXPANSION / MiB} MiB`,
          body: snappyBomb(DECODED_LIMIT, EXPANSION),
          reason: /expands past its declared length 8388608/,
        },
        {
          name: "header of 1 KiB, stream expanding to 64 MiB",
          body: snappyBomb(1024, 64 * MiB),
          reason: /expands past its declared length 1024/,
        },
        {
          name: "header longer than 5 bytes",
          body: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00]),
          reason: /snappy header is longer than 5 bytes/,
        },
        {
          name: "protobuf field declaring 2 GiB",
          // WriteRequest.timeseries (field 1, length-delimited) of length 2^31.
          body: snappyLiteral(new Uint8Array([0x0a, ...uvarint(2 ** 31), 0x0a, 0x00])),
          reason: /^Cannot decode write request: /,
        },
        {
          name: "protobuf label declaring 4 GiB inside a short series",
          body: snappyLiteral(
            new Uint8Array([0x0a, 0x08, 0x0a, 0x06, 0x0a, ...uvarint(2 ** 32), 0x00]),
          ),
          reason: /^Cannot decode write request: /,
        },
      ];
      const outcomes: string[] = [];
      for (const k of cases) {
        const res = await post(connector.url, k.body);
        outcomes.push(`${k.name} (${k.body.length} bytes): ${res.status}`);
        assertEquals(res.status, 400, `${k.name}: ${res.text}`);
        assertMatch(res.text, /^[^\n]+\n$/, `${k.name}: one-line body`);
        assertMatch(res.text, k.reason, k.name);
      }
      const after = processMemory(pid);
      // Over --web.max-request-size: 413, with or without a Content-Length.
      const big = new Uint8Array(40 * MiB);
      const declared = await post(connector.url, big);
      assertEquals(declared.status, 413, declared.text);
      const streamed = await post(
        connector.url,
        new ReadableStream({
          start(ctl) {
            for (let i = 0; i < 40; i++) ctl.enqueue(new Uint8Array(MiB));
            ctl.close();
          },
        }),
      );
      assertEquals(streamed.status, 413, streamed.text);
      outcomes.push(`40 MiB body, declared and streamed: ${declared.status}, ${streamed.status}`);

      const growth = after.hwm - before.hwm;
      console.log(
        `bombs: ${outcomes.join("; ")}. Peak RSS ${Math.round(before.hwm / MiB)} MiB before, ` +
          `${Math.round(after.hwm / MiB)} MiB after (+${Math.round(growth / MiB)} MiB); ` +
          `RSS now ${Math.round(after.rss / MiB)} MiB`,
      );
      assert(
        growth < RSS_GROWTH_LIMIT,
        `peak RSS grew by ${Math.round(growth / MiB)} MiB serving the bombs`,
      );
      // Still healthy and writing.
      assertEquals(
        (await post(
          connector.url,
          writeRequestBody(nodeExporterSeries(3)) as Uint8Array<ArrayBuffer>,
        )).status,
        204,
      );
      assertEquals(await connector.stop(), 0);
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
