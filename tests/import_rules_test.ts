/**
 * Keeps the import rules of docs/architecture.md true: parses the imports
 * of every module under src/ and fails on an edge the rules forbid. The
 * layers, from the bottom:
 *
 * - shared: errors, db_errors, ingest (the stages' contracts), body,
 *   limits, config, config_compat, version, build_info, wire/, telemetry/.
 *   They import only each other (and deps.ts, proto/, deno.json).
 * - stages: remote_write/, remote_read/, ha/, election/, storage/, ops/,
 *   promql/.
 *   A stage imports shared modules and its own directory; of another
 *   stage, only that stage's published modules (PUBLISHED below), never
 *   its internals. Types they exchange live in ingest.ts.
 * - composition: app.ts (wires everything), server.ts (routing), health.ts,
 *   auth.ts. Only composition imports composition; nothing in src imports
 *   app.ts (main.ts does).
 *
 * Everywhere: third-party code only through deps.ts (node: built-ins are
 * fine).
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { REPO_ROOT } from "./helpers/procs.ts";

const SHARED_FILES = new Set([
  "errors.ts",
  "db_errors.ts",
  "ingest.ts",
  "body.ts",
  "limits.ts",
  "config.ts",
  "config_compat.ts",
  "version.ts",
  "build_info.ts",
]);
const SHARED_DIRS = new Set(["wire", "telemetry"]);
const STAGES = new Set([
  "remote_write",
  "remote_read",
  "ha",
  "election",
  "storage",
  "ops",
  "promql",
]);
const COMPOSITION = new Set(["app.ts", "server.ts", "health.ts", "auth.ts"]);
/**
 * Modules of a stage that other stages may import: the pool and its gate,
 * the lock keys; the remote-read querier with its matcher and regex
 * translation, which the PromQL API fetches through.
 */
const PUBLISHED = new Set([
  "storage/db.ts",
  "storage/locks.ts",
  "storage/windows.ts",
  "remote_read/querier.ts",
  "remote_read/matchers.ts",
  "remote_read/regex.ts",
]);

type Layer =
  | { kind: "shared" }
  | { kind: "stage"; stage: string }
  | { kind: "composition" }
  | { kind: "outside" };

/** The layer of a path relative to the repository root. */
function layerOf(path: string): Layer {
  if (!path.startsWith("src/")) return { kind: "outside" };
  const rel = path.slice(4);
  const [first] = rel.split("/");
  if (rel.includes("/")) {
    if (SHARED_DIRS.has(first)) return { kind: "shared" };
    if (STAGES.has(first)) return { kind: "stage", stage: first };
    throw new Error(`src/${first}/ is in no layer: add it to tests/import_rules_test.ts`);
  }
  if (SHARED_FILES.has(rel)) return { kind: "shared" };
  if (COMPOSITION.has(rel)) return { kind: "composition" };
  throw new Error(`src/${rel} is in no layer: add it to tests/import_rules_test.ts`);
}

/** Why `from` may not import `spec` (resolved to `to`), or null when it may. */
export function violation(from: string, spec: string, to: string | null): string | null {
  if (to === null) {
    if (spec.startsWith("node:")) return null;
    return `imports "${spec}" directly: third-party code goes through deps.ts`;
  }
  const a = layerOf(from);
  const b = layerOf(to);
  if (b.kind === "outside") {
    const ok = to === "deps.ts" || to.startsWith("proto/") || to === "deno.json";
    return ok ? null : `imports ${to}, outside src/`;
  }
  if (to === "src/app.ts") return "imports app.ts, the composition root (only main.ts does)";
  switch (a.kind) {
    case "outside":
      return null;
    case "composition":
      return null;
    case "shared":
      return b.kind === "shared" ? null : `is shared but imports ${b.kind} module ${to}`;
    case "stage":
      if (b.kind === "shared") return null;
      if (b.kind === "composition") return `is in stage ${a.stage} but imports ${to}`;
      if (b.kind === "stage" && b.stage === a.stage) return null;
      if (PUBLISHED.has(to.slice(4))) return null;
      return `is in stage ${a.stage} but imports ${to}, an internal of stage ${
        (b as { stage: string }).stage
      } (share it through ingest.ts or a shared module)`;
  }
}

/** Import and re-export specifiers of a module's text, comments removed. */
export function importSpecifiers(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;"']*?\bfrom\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) out.push(m[1]);
  return out;
}

/** `spec` imported by `from` as a path from the repository root, or null for a package. */
function resolve(from: string, spec: string): string | null {
  if (!spec.startsWith(".")) return null;
  const parts = from.split("/").slice(0, -1);
  for (const p of spec.split("/")) {
    if (p === "..") parts.pop();
    else if (p !== ".") parts.push(p);
  }
  return parts.join("/");
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${REPO_ROOT}/${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await sourceFiles(path));
    else if (e.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

Deno.test("no module under src/ imports across the layers and stages of docs/architecture.md", async () => {
  const files = await sourceFiles("src");
  const problems: string[] = [];
  let edges = 0;
  for (const from of files) {
    const text = await Deno.readTextFile(`${REPO_ROOT}/${from}`);
    for (const spec of importSpecifiers(text)) {
      edges++;
      const why = violation(from, spec, resolve(from, spec));
      if (why) problems.push(`${from} ${why}`);
    }
  }
  // The parser must see the graph, or this test proves nothing.
  assert(edges > 100, `only ${edges} imports found under src/`);
  assertEquals(problems, []);
});

Deno.test("nothing under src/ but config.ts reads the environment", async () => {
  const readers: string[] = [];
  for (const path of await sourceFiles("src")) {
    if (path === "src/config.ts" || path === "src/config_compat.ts") continue;
    const text = await Deno.readTextFile(`${REPO_ROOT}/${path}`);
    if (/\bDeno\.env\b/.test(text)) readers.push(path);
  }
  assertEquals(readers, []);
});

Deno.test("importSpecifiers() finds single-line, multi-line, re-export and dynamic imports, not comments", () => {
  const text = `
import type { A } from "./a.ts";
import {
  b,
  c,
} from "../b.ts";
export { d } from "./d.ts";
export type { E } from "./e.ts";
import "./side.ts";
const f = await import("./f.ts");
// import { g } from "./g.ts";
/** import { h } from "./h.ts"; */
`;
  assertEquals(importSpecifiers(text).sort(), [
    "../b.ts",
    "./a.ts",
    "./d.ts",
    "./e.ts",
    "./f.ts",
    "./side.ts",
  ]);
});

Deno.test("violation() refuses the edges the rules forbid and allows the others", () => {
  const check = (from: string, to: string) => violation(from, "./x.ts", to);
  // Forbidden.
  assert(check("src/ha/filter.ts", "src/remote_write/handler.ts"), "stage to stage internals");
  assert(check("src/remote_read/handler.ts", "src/remote_write/decode.ts"));
  assert(check("src/ha/filter.ts", "src/storage/writer.ts"));
  assert(check("src/ingest.ts", "src/storage/writer.ts"), "shared to stage");
  assert(check("src/wire/snappy.ts", "src/server.ts"), "shared to composition");
  assert(check("src/ops/status.ts", "src/app.ts"), "anything to app.ts");
  assert(check("src/server.ts", "src/app.ts"));
  assert(check("src/storage/db.ts", "src/health.ts"), "stage to composition");
  assert(violation("src/storage/db.ts", "postgres", null), "a package not through deps.ts");
  // Allowed.
  assertEquals(check("src/ha/filter.ts", "src/ingest.ts"), null);
  assertEquals(check("src/ha/filter.ts", "src/ha/lease.ts"), null);
  assertEquals(check("src/remote_read/querier.ts", "src/storage/db.ts"), null);
  assertEquals(check("src/election/advisory_lock.ts", "src/storage/locks.ts"), null);
  assertEquals(check("src/app.ts", "src/storage/writer.ts"), null);
  assertEquals(check("src/storage/writer.ts", "deps.ts"), null);
  assertEquals(violation("src/auth.ts", "node:crypto", null), null);
});
