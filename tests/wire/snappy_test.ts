import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { snappy } from "../../deps.ts";
import { uncompressSnappyBlock } from "../../src/wire/snappy.ts";
import { BadRequestError } from "../../src/errors.ts";

/** Deterministic pseudo-random bytes. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s >>> 24;
  };
}

function buffers(): Uint8Array[] {
  const rand = prng(42);
  const out: Uint8Array[] = [new Uint8Array(0), new Uint8Array([7])];
  // Incompressible (long literals), a repeated short pattern (overlapping
  // copies), repeated long blocks (long non-overlapping copies), and text.
  out.push(Uint8Array.from({ length: 70_000 }, rand));
  out.push(Uint8Array.from({ length: 5_000 }, (_, i) => "abc".charCodeAt(i % 3)));
  const block = Uint8Array.from({ length: 300 }, rand);
  out.push(Uint8Array.from({ length: 30_000 }, (_, i) => block[i % 300]));
  const text = new TextEncoder().encode(
    Array.from({ length: 2000 }, (_, i) => `node_cpu{cpu="${i % 8}",host="h-${i >> 4}"} `).join(""),
  );
  out.push(text);
  for (let n = 0; n < 50; n++) {
    const len = rand() * 40;
    out.push(Uint8Array.from({ length: len }, () => rand() % 4));
  }
  return out;
}

Deno.test("uncompressSnappyBlock() gives back exactly what snappyjs compressed", () => {
  for (const raw of buffers()) {
    const got = uncompressSnappyBlock(snappy.compress(raw), 1 << 20);
    assertEquals(got.length, raw.length);
    assertEquals(got, raw);
  }
});

Deno.test("uncompressSnappyBlock() agrees with snappyjs on long literals and copies", () => {
  // Hand-made stream: a 40-byte literal (60-length tag), a 36-byte copy at
  // offset 40 (native path), a 20-byte overlapping copy at offset 3.
  const lit = Array.from({ length: 40 }, (_, i) => i + 1);
  const stream = new Uint8Array([
    96, // declared length 96 = 40 + 36 + 20
    60 << 2, // literal, length in 1 extra byte
    39,
    ...lit,
    (35 << 2) | 2, // copy, 2-byte offset, length 36
    40,
    0,
    (19 << 2) | 2, // copy, 2-byte offset, length 20
    3,
    0,
  ]);
  const ours = uncompressSnappyBlock(stream, 1 << 20);
  assertEquals(ours, snappy.uncompress(stream));
  assertEquals([...ours.subarray(76, 82)], [...lit.slice(33, 36), ...lit.slice(33, 36)]);
});

Deno.test("uncompressSnappyBlock() refuses a header declaring more than the stream can expand to", () => {
  // 1 MiB declared, 2 bytes of stream: refused, whatever the limit allows.
  const body = new Uint8Array([0x80, 0x80, 0x40, 0x00, 0x61]);
  assertThrows(
    () => uncompressSnappyBlock(body, 1 << 26),
    BadRequestError,
    "invalid snappy data: 1 bytes decoded, header declares 1048576",
  );
});
