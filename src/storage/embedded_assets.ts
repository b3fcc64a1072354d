/**
 * PGlite's WebAssembly and data files, when the program ships them beside
 * itself. From a checkout PGlite finds them in its npm package; a `deno
 * bundle` (dist/promscale.js) has no npm package around it, and a `deno
 * compile` executable carries them only as files it was told to include.
 * packaging/compile.ts therefore puts copies in a `pglite/` directory next to
 * this module (included in the executable) or next to the bundle, and this
 * module hands them to PGlite so that it never looks for its own.
 */

/** The files PGlite loads at start, all needed. */
export const PGLITE_ASSETS: readonly string[] = ["pglite.wasm", "pglite.data", "initdb.wasm"];

/** The directory, relative to this module (or the bundle), holding shipped copies. */
export const PGLITE_ASSET_DIR = "pglite";

/** What PGlite.create() takes instead of reading its own files. */
export interface PgliteAssets {
  pgliteWasmModule?: WebAssembly.Module;
  initdbWasmModule?: WebAssembly.Module;
  fsBundle?: Blob;
}

/**
 * Loads the shipped copies; `{}` when there are none (a checkout), so that
 * PGlite loads its own.
 */
export async function shippedAssets(
  base: URL = new URL(`./${PGLITE_ASSET_DIR}/`, import.meta.url),
): Promise<PgliteAssets> {
  let files: Uint8Array<ArrayBuffer>[];
  try {
    files = await Promise.all(PGLITE_ASSETS.map((f) => Deno.readFile(new URL(f, base))));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return {};
    throw err;
  }
  const [wasm, data, initdb] = files;
  return {
    pgliteWasmModule: await WebAssembly.compile(wasm),
    initdbWasmModule: await WebAssembly.compile(initdb),
    fsBundle: new Blob([data]),
  };
}
