/**
 * Build identity. VERSION comes from deno.json so there is one place to bump
 * it; COMMIT comes from src/build_info.ts, which `deno task compile` stamps
 * in its temporary copy of the source, so the program never reads git, a
 * file or the environment at run time to know them.
 */
import denoJson from "../deno.json" with { type: "json" };
import { BUILD_COMMIT } from "./build_info.ts";

/** The program's version, from deno.json. */
export const VERSION: string = denoJson.version;

/** The git commit the program was built from; "unknown" unless built by `deno task compile`. */
export const COMMIT: string = BUILD_COMMIT;
