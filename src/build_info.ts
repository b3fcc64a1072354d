/**
 * Facts stamped at build time. `deno task compile` (packaging/compile.ts)
 * rewrites this file in a temporary copy of the source, never here, so the
 * program learns its commit without reading git or files at run time.
 */

/** The git commit the program was built from; "unknown" when run from a checkout. */
export const BUILD_COMMIT: string = "unknown";
