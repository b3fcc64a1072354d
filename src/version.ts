/**
 * Build identity. VERSION comes from deno.json so there is one place to bump
 * it; COMMIT is a constant that a build step (e.g. packaging/compile.ts) may
 * rewrite before `deno compile`, so the program never reads git or the
 * environment at run time.
 */
import denoJson from "../deno.json" with { type: "json" };

/** The program's version, from deno.json. */
export const VERSION: string = denoJson.version;

/** The git commit the program was built from; "unknown" unless a build step replaced it. */
export const COMMIT: string = "unknown";
