/**
 * `deno task compile` (packaging/compile.ts): its command line, and what it
 * says when `deno compile` has no usable base binary (denort), which is the
 * case on machines that cannot reach Deno's release server.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "../helpers/assert.ts";
import { killAll, REPO_ROOT, tempDir } from "../helpers/procs.ts";
import { BuildError, buildInfoModule, parseBuildArgs } from "../../packaging/compile.ts";
import { VERSION } from "../../src/version.ts";

/** Runs packaging/compile.ts with `args` and only the environment given (plus PATH, HOME, DENO_DIR). */
async function compile(args: string[], env: Record<string, string> = {}) {
  const base: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["PATH", "HOME", "DENO_DIR"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) base[name] = v;
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "packaging/compile.ts", ...args],
    cwd: REPO_ROOT,
    env: { ...base, ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("parseBuildArgs() defaults to dist/promscale and resolves relative paths from the caller's directory", () => {
  assertEquals(parseBuildArgs([], "/somewhere"), {
    output: `${REPO_ROOT}/dist/promscale`,
    target: "",
    commit: null,
    check: true,
    bundle: false,
  });
  assertEquals(parseBuildArgs(["--bundle"], "/x").output, `${REPO_ROOT}/dist/promscale.js`);
  const o = parseBuildArgs(
    ["-o", "out/p", "--target=aarch64-unknown-linux-gnu", "--commit", "abc", "--no-check"],
    "/home/me/",
  );
  assertEquals(o, {
    output: "/home/me/out/p",
    target: "aarch64-unknown-linux-gnu",
    commit: "abc",
    check: false,
    bundle: false,
  });
});

Deno.test("parseBuildArgs() rejects unknown arguments and missing values in one line", () => {
  const unknown = assertThrows(() => parseBuildArgs(["--allow-all"], "/"), BuildError);
  assertEquals(unknown.code, 2);
  assertMatch(unknown.message, /^Unknown argument "--allow-all" \(known: [^\n]*\)$/);
  const missing = assertThrows(() => parseBuildArgs(["--output"], "/"), BuildError);
  assertEquals(missing.message, 'Flag "--output" needs a value');
  assertThrows(() => parseBuildArgs(["--bundle", "--target", "x"], "/"), BuildError);
});

Deno.test("buildInfoModule() writes the commit as a string constant", () => {
  assertEquals(
    buildInfoModule('a"b'),
    '// Stamped by packaging/compile.ts for this build.\nexport const BUILD_COMMIT: string = "a\\"b";\n',
  );
});

Deno.test("deno task compile says in one line what to do when DENORT_BIN does not exist", async () => {
  try {
    const dir = await tempDir("promscale-compile-");
    const missing = `${dir}/no-such-denort`;
    const res = await compile(["--no-check", "--output", `${dir}/promscale`], {
      DENORT_BIN: missing,
    });
    assertEquals(res.code, 1, res.stdout + res.stderr);
    const lines = res.stderr.trim().split("\n");
    assertEquals(lines.length, 1, res.stderr);
    assert(lines[0].startsWith(`Cannot build "${dir}/promscale": DENORT_BIN "${missing}"`));
    assertMatch(lines[0], /set DENORT_BIN to the denort executable of Deno \d+\.\d+\.\d+/);
    assert(!exists(`${dir}/promscale`));
  } finally {
    await killAll();
  }
});

Deno.test("deno task compile refuses a base binary that does not run the program", async () => {
  try {
    const dir = await tempDir("promscale-compile-");
    // The deno CLI itself is not a denort: an executable built on it ignores
    // the embedded program and prints Deno's own version.
    const res = await compile(["--no-check", "--output", `${dir}/promscale`], {
      DENORT_BIN: Deno.execPath(),
    });
    assertEquals(res.code, 1, res.stdout + res.stderr);
    const lines = res.stderr.trim().split("\n");
    assertEquals(lines.length, 1, res.stderr);
    assertMatch(lines[0], /is not a denort executable of Deno .* printed "deno \d/);
    assert(!exists(`${dir}/promscale`), "the broken executable was left behind");
  } finally {
    await killAll();
  }
});

Deno.test("deno task compile builds a working executable, or says in one line how to get the base binary", async () => {
  try {
    const dir = await tempDir("promscale-compile-");
    const out = `${dir}/promscale`;
    const res = await compile(["--no-check", "--output", out]);
    if (res.code === 0) {
      // A machine that reaches Deno's release server (or has denort cached).
      const run = await new Deno.Command(out, {
        args: ["--version"],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(run.code, 0);
      assertMatch(
        new TextDecoder().decode(run.stdout),
        new RegExp(`^promscale ${VERSION.replaceAll(".", "\\.")} \\(deno `),
      );
    } else {
      assertEquals(res.code, 1);
      const lines = res.stderr.trim().split("\n");
      assertEquals(lines.length, 1, res.stderr);
      assertMatch(
        lines[0],
        /^Cannot build ".*": deno compile could not get its base binary .*; set DENORT_BIN .* or run "deno task compile" on a machine with network access$/,
      );
      assert(!exists(out));
    }
  } finally {
    await killAll();
  }
});
