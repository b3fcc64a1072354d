/**
 * `deno task compile`: builds `dist/promscale`, one self-contained
 * executable, with `deno compile` and only the permissions the program needs.
 *
 *   deno task compile [--output <path>] [--target <triple>] [--commit <id>] [--no-check]
 *   deno task compile --bundle [--output <path>]
 *
 * The checkout is never modified: the source is copied to a temporary
 * directory, `src/build_info.ts` is stamped there with the git commit, and
 * `deno compile` (or, with `--bundle`, `deno bundle`, which writes
 * `dist/promscale.js`: one JavaScript file for `deno run`) builds from that
 * copy. The result is started once with `--version` to prove it runs the
 * program.
 *
 * `deno compile` puts the program on a base binary, `denort`, of the same
 * Deno version, which it downloads from Deno's release server. Where that
 * server cannot be reached, set DENORT_BIN to a denort executable (Deno
 * itself honours the variable); when neither works this prints one line
 * saying so.
 */
import { VERSION } from "../src/version.ts";
import { loadPglite } from "../deps.ts";
import { PGLITE_ASSET_DIR, PGLITE_ASSETS } from "../src/storage/embedded_assets.ts";

/**
 * The permissions of the compiled program, and of `deno run` on the bundle.
 * No --allow-run or --allow-ffi: the program needs neither.
 */
export const RUN_PERMISSIONS: readonly string[] = [
  // Listen for Prometheus and connect to PostgreSQL.
  "--allow-net",
  // Deno.env.toObject() for PROMSCALE_*; postgres.js also reads PG* variables.
  "--allow-env",
  // --config, --web.auth.*-file and TLS files live at paths the operator chooses.
  "--allow-read",
  // The embedded database (no database configured) keeps its files in
  // --db.embedded-dir, a path the operator chooses.
  "--allow-write",
  // postgres.js falls back to the OS user name (as libpq does) when a
  // --db.uri names no user; os.userInfo() needs these three.
  "--allow-sys=uid,gid,userInfo",
];

/** The repository root (where deno.json and main.ts are). */
export const REPO_ROOT: string = decodeURIComponent(new URL("../", import.meta.url).pathname)
  .replace(/\/$/, "");

/** Top-level entries not copied into the build directory: not part of the program. */
const NOT_PROGRAM = new Set([
  ".git",
  ".ci",
  "node_modules",
  "dist",
  "bench",
  "tests",
  "packaging",
  // package.json only brings the deno binary; without it Deno does not try
  // to resolve that npm package while building.
  "package.json",
  "package-lock.json",
]);

/** A failure to report in one line and exit 1 (2 for bad usage). */
export class BuildError extends Error {
  constructor(message: string, readonly code = 1) {
    super(message.replace(/\s*[\r\n]+\s*/g, " ").trim());
    this.name = "BuildError";
  }
}

/** What to build, from the command line. */
export interface BuildOptions {
  /** Absolute path of the result. */
  output: string;
  /** `deno compile --target`; "" = this machine's. */
  target: string;
  /** The commit to stamp; null = ask git. */
  commit: string | null;
  /** Type-check while building (the default; `deno task ok` checks too). */
  check: boolean;
  /** Build dist/promscale.js with `deno bundle` instead of an executable. */
  bundle: boolean;
}

/** Parses the command line of `deno task compile`; relative paths are taken from `cwd`. */
export function parseBuildArgs(args: readonly string[], cwd: string): BuildOptions {
  const opts: BuildOptions = { output: "", target: "", commit: null, check: true, bundle: false };
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].startsWith("--") && args[i].includes("=")
      ? [args[i].slice(0, args[i].indexOf("=")), args[i].slice(args[i].indexOf("=") + 1)]
      : [args[i], undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined || v === "") throw new BuildError(`Flag "${flag}" needs a value`, 2);
      return v;
    };
    switch (flag) {
      case "--output":
      case "-o":
        opts.output = value();
        break;
      case "--target":
        opts.target = value();
        break;
      case "--commit":
        opts.commit = value();
        break;
      case "--no-check":
        opts.check = false;
        break;
      case "--bundle":
        opts.bundle = true;
        break;
      default:
        throw new BuildError(
          `Unknown argument "${args[i]}" (known: --output, --target, --commit, --no-check, ` +
            "--bundle)",
          2,
        );
    }
  }
  if (opts.bundle && opts.target !== "") {
    throw new BuildError("--bundle and --target cannot be combined", 2);
  }
  const output = opts.output || `${REPO_ROOT}/dist/promscale${opts.bundle ? ".js" : ""}`;
  opts.output = output.startsWith("/") ? output : `${cwd.replace(/\/$/, "")}/${output}`;
  return opts;
}

/** Runs a command to completion; never throws for a non-zero exit. */
async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: opts.timeoutMs ? AbortSignal.timeout(opts.timeoutMs) : undefined,
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * The commit of the checkout at `root`: 12 hex digits, "-dirty" when tracked
 * files differ from it, "unknown" when git or the repository is missing.
 */
export async function gitCommit(root: string = REPO_ROOT): Promise<string> {
  try {
    const head = await run("git", ["-C", root, "rev-parse", "--short=12", "HEAD"]);
    if (head.code !== 0) return "unknown";
    const status = await run("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"]);
    return head.stdout.trim() + (status.code === 0 && status.stdout.trim() !== "" ? "-dirty" : "");
  } catch {
    return "unknown"; // no git on this machine
  }
}

/** The text of src/build_info.ts for a build of `commit`. */
export function buildInfoModule(commit: string): string {
  return [
    "// Stamped by packaging/compile.ts for this build.",
    `export const BUILD_COMMIT: string = ${JSON.stringify(commit)};`,
    "",
  ].join("\n");
}

async function copyTree(from: string, to: string, skip: ReadonlySet<string>): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (skip.has(entry.name)) continue;
    const src = `${from}/${entry.name}`;
    const dst = `${to}/${entry.name}`;
    if (entry.isDirectory) await copyTree(src, dst, new Set());
    else if (entry.isFile) await Deno.copyFile(src, dst);
  }
}

/**
 * Copies the program's source from `root` into a new temporary directory
 * and stamps its src/build_info.ts with `commit`. The caller removes the
 * directory.
 */
export async function stageSource(root: string, commit: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "promscale-build-" });
  try {
    await copyTree(root, dir, NOT_PROGRAM);
    const info = `${dir}/src/build_info.ts`;
    const original = await Deno.readTextFile(info).catch(() => "");
    if (!original.includes("export const BUILD_COMMIT")) {
      throw new BuildError(
        `Cannot stamp the commit: "${root}/src/build_info.ts" has no BUILD_COMMIT`,
      );
    }
    await Deno.writeTextFile(info, buildInfoModule(commit));
    return dir;
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}

/** The target triple Deno builds for by default, e.g. "x86_64-unknown-linux-gnu". */
const HOST_TARGET = Deno.build.target;

function denortHelp(target: string): string {
  const v = Deno.version.deno;
  return `set DENORT_BIN to the denort executable of Deno ${v} for ${target} (unzipped from ` +
    `"denort-${target}.zip" of the Deno ${v} release), or run "deno task compile" on a machine ` +
    "with network access";
}

/** Whether `deno compile` failed for want of its base binary. */
function isBaseBinaryFailure(stderr: string): boolean {
  return /base binary|denort/i.test(stderr);
}

/** Starts the result with `--version` and checks that the program answers. */
async function smokeTest(opts: BuildOptions, shown: string): Promise<string> {
  const args = opts.bundle
    ? ["run", ...RUN_PERMISSIONS, "--no-config", "--no-lock", "--no-npm", "--no-remote"]
    : [];
  const cmd = opts.bundle ? Deno.execPath() : opts.output;
  const res = await run(cmd, [...args, ...(opts.bundle ? [opts.output] : []), "--version"], {
    cwd: "/",
    timeoutMs: 60_000,
  }).catch((err) => ({ code: -1, stdout: "", stderr: (err as Error).message }));
  const line = res.stdout.trim().split("\n")[0] ?? "";
  if (res.code === 0 && line.startsWith(`promscale ${VERSION} (`)) return line;
  await Deno.remove(opts.output).catch(() => {});
  const got = (line || res.stderr.trim().split("\n")[0] || `exit code ${res.code}`).slice(0, 120);
  const denort = Deno.env.get("DENORT_BIN");
  if (!opts.bundle && denort) {
    throw new BuildError(
      `Cannot build "${shown}": DENORT_BIN "${denort}" is not a denort executable of Deno ` +
        `${Deno.version.deno} (the result printed "${got}" for --version); ` +
        denortHelp(opts.target || HOST_TARGET),
    );
  }
  throw new BuildError(
    `Cannot build "${shown}": the result does not run (--version gave "${got}")`,
  );
}

/** `path` relative to the repository root when inside it, for messages. */
function shownPath(path: string): string {
  return path.startsWith(REPO_ROOT + "/") ? path.slice(REPO_ROOT.length + 1) : path;
}

/**
 * The directory of PGlite's WebAssembly and data files in Deno's npm cache
 * (the version pinned in deno.json), fetched first if needed.
 */
export async function pgliteDist(root: string = REPO_ROOT): Promise<string> {
  await loadPglite(); // brings the package into the cache
  const imports = JSON.parse(await Deno.readTextFile(`${root}/deno.json`)).imports ?? {};
  const spec = String(imports["@electric-sql/pglite"] ?? "");
  const version = /@([^@/]+)$/.exec(spec)?.[1];
  if (!version) throw new BuildError(`Cannot find the PGlite version in deno.json ("${spec}")`);
  const info = await run(Deno.execPath(), ["info", "--json"]);
  const npmCache = info.code === 0 ? JSON.parse(info.stdout).npmCache : undefined;
  const dir = `${npmCache}/registry.npmjs.org/@electric-sql/pglite/${version}/dist`;
  for (const f of PGLITE_ASSETS) {
    if (!(await Deno.stat(`${dir}/${f}`).catch(() => null))?.isFile) {
      throw new BuildError(`Cannot find PGlite's "${f}" in "${dir}"`);
    }
  }
  return dir;
}

/**
 * Copies PGlite's files into `dir`/pglite/, where
 * src/storage/embedded_assets.ts looks for them (beside the module in an
 * executable, beside the bundle).
 */
export async function copyPgliteAssets(dir: string): Promise<string> {
  const from = await pgliteDist();
  const to = `${dir}/${PGLITE_ASSET_DIR}`;
  await Deno.mkdir(to, { recursive: true });
  for (const f of PGLITE_ASSETS) await Deno.copyFile(`${from}/${f}`, `${to}/${f}`);
  return to;
}

/** Builds what `opts` asks for; returns the `--version` line of the result. */
export async function build(opts: BuildOptions): Promise<string> {
  const shown = shownPath(opts.output);
  const denort = Deno.env.get("DENORT_BIN");
  if (!opts.bundle && denort) {
    const info = await Deno.stat(denort).catch(() => null);
    if (info === null || !info.isFile) {
      throw new BuildError(
        `Cannot build "${shown}": DENORT_BIN "${denort}" does not exist; ` +
          denortHelp(opts.target || HOST_TARGET),
      );
    }
  }
  const commit = opts.commit ?? await gitCommit(REPO_ROOT);
  const stage = await stageSource(REPO_ROOT, commit);
  try {
    await Deno.mkdir(opts.output.slice(0, opts.output.lastIndexOf("/")) || "/", {
      recursive: true,
    });
    const args = opts.bundle
      ? ["bundle", "--platform", "deno", ...(opts.check ? ["--check"] : [])]
      : ["compile", ...(opts.check ? [] : ["--no-check"]), ...RUN_PERMISSIONS];
    // The embedded database's WebAssembly and data: inside the executable,
    // beside the bundle (a bundle is one JavaScript file and cannot hold them).
    if (opts.bundle) {
      await copyPgliteAssets(opts.output.slice(0, opts.output.lastIndexOf("/")) || "/");
    } else {
      args.push("--include", await copyPgliteAssets(`${stage}/src/storage`));
    }
    if (opts.target) args.push("--target", opts.target);
    args.push("--output", opts.output, `${stage}/main.ts`);
    const res = await run(Deno.execPath(), args, { cwd: stage });
    if (res.code !== 0) {
      if (!opts.bundle && isBaseBinaryFailure(res.stderr)) {
        throw new BuildError(
          `Cannot build "${shown}": deno compile could not get its base binary (denort ` +
            `${Deno.version.deno} for ${opts.target || HOST_TARGET}); ` +
            denortHelp(opts.target || HOST_TARGET),
        );
      }
      // Type errors and the like: Deno's own report says it best.
      console.error(res.stderr.trimEnd());
      throw new BuildError(`Cannot build "${shown}": deno ${args[0]} failed`);
    }
  } finally {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
  }
  if (opts.target && opts.target !== HOST_TARGET) return `(not run: built for ${opts.target})`;
  return await smokeTest(opts, shown);
}

async function main(args: string[]): Promise<number> {
  try {
    const opts = parseBuildArgs(args, Deno.env.get("INIT_CWD") ?? Deno.cwd());
    const version = await build(opts);
    const size = (await Deno.stat(opts.output)).size;
    console.log(`Built ${shownPath(opts.output)} (${(size / 2 ** 20).toFixed(1)} MiB): ${version}`);
    return 0;
  } catch (err) {
    if (!(err instanceof BuildError)) throw err;
    console.error(err.message);
    return err.code;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
