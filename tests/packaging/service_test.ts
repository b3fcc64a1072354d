/**
 * packaging/: the systemd unit passes `systemd-analyze verify` (Debian's
 * systemd package; `bash .ci/run` installs it) and its security review, and
 * every flag, variable and key in the unit and the example files is one the
 * program accepts.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { killAll, REPO_ROOT, tempDir } from "../helpers/procs.ts";
import { type Config, ConfigExit, parseConfig } from "../../src/config.ts";

const UNIT = `${REPO_ROOT}/packaging/promscale.service`;
const ENV_EXAMPLE = `${REPO_ROOT}/packaging/promscale.env.example`;
const CONFIG_EXAMPLE = `${REPO_ROOT}/packaging/config.yml.example`;
const INSTALLED_BINARY = "/usr/local/bin/promscale";
const INSTALLED_CONFIG = "/etc/promscale/config.yml";

async function systemdAnalyze(args: string[]) {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("systemd-analyze", {
      args,
      env: { SYSTEMD_LOG_COLOR: "0", SYSTEMD_PAGER: "" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(
        "systemd-analyze is missing: install Debian's systemd package (bash .ci/run does)",
      );
    }
    throw err;
  }
  const dec = new TextDecoder();
  return { code: out.code, output: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/**
 * A copy of `unitText` in a temporary directory whose ExecStart points at a
 * stand-in executable there: `verify` insists that the binary exists.
 */
async function unitCopy(unitText: string): Promise<string> {
  assert(unitText.includes(`ExecStart=${INSTALLED_BINARY} `), "ExecStart has moved");
  const dir = await tempDir("promscale-unit-");
  await Deno.writeTextFile(`${dir}/promscale`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  const path = `${dir}/promscale.service`;
  await Deno.writeTextFile(path, unitText.replaceAll(INSTALLED_BINARY, `${dir}/promscale`));
  return path;
}

/** `[Section] Key=Value` settings of a unit, in order. */
function unitSettings(text: string): [string, string][] {
  return text.split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#") && !l.startsWith("["))
    .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]);
}

/** The example config file for INSTALLED_CONFIG, nothing else exists. */
function readExampleFile(configText: string) {
  return (path: string): string | null => path === INSTALLED_CONFIG ? configText : null;
}

/** NAME=value lines → a map; `# NAME=value` lines too when `commented`. */
function envLines(text: string, commented: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  const re = commented ? /^#\s*(PROMSCALE_[A-Z0-9_]+)=(.*)$/ : /^(PROMSCALE_[A-Z0-9_]+)=(.*)$/;
  for (const line of text.split("\n")) {
    const m = re.exec(line.trim());
    if (m) out[m[1]] = m[2];
  }
  return out;
}

/** Paragraphs (blocks separated by blank lines) of a file. */
function paragraphs(text: string): string[] {
  return text.split(/\n\s*\n/);
}

/** The environment variables --help documents ("env: PROMSCALE_…"). */
function documentedVariables(): Set<string> {
  try {
    parseConfig(["--help"], {}, () => null);
  } catch (err) {
    if (err instanceof ConfigExit) {
      return new Set([...err.output.matchAll(/env: (PROMSCALE_[A-Z0-9_]+)/g)].map((m) => m[1]));
    }
    throw err;
  }
  throw new Error("--help did not exit");
}

Deno.test("packaging/promscale.service passes systemd-analyze verify without a warning", async () => {
  try {
    const text = await Deno.readTextFile(UNIT);
    const res = await systemdAnalyze(["verify", await unitCopy(text)]);
    assertEquals(res.code, 0, res.output);
    const about = res.output.split("\n").filter((l) => l.includes("promscale"));
    assertEquals(about, [], res.output);

    // The same check notices a mistake, so the silence above means something.
    const broken = await unitCopy(text.replace("ProtectSystem=strict", "ProtectSytem=strict"));
    const bad = await systemdAnalyze(["verify", broken]);
    assertMatch(bad.output, /Unknown key 'ProtectSytem'/);
  } finally {
    await killAll();
  }
});

Deno.test("packaging/promscale.service is hardened: systemd's security review rates it OK", async () => {
  try {
    const text = await Deno.readTextFile(UNIT);
    const res = await systemdAnalyze(["security", "--offline=true", await unitCopy(text)]);
    const m = /Overall exposure level for promscale\.service: (\d+(?:\.\d+)?) (\S+)/.exec(
      res.output,
    );
    assert(m !== null, res.output);
    // 0–10, lower is better; "OK" is systemd's best band but one.
    assert(Number(m[1]) <= 2, `exposure ${m[1]} ${m[2]}:\n${res.output}`);

    const settings = new Map(unitSettings(text));
    for (
      const [key, value] of [
        ["DynamicUser", "yes"],
        ["ProtectSystem", "strict"],
        ["ProtectHome", "yes"],
        ["NoNewPrivileges", "yes"],
        ["PrivateTmp", "yes"],
        ["Restart", "on-failure"],
        ["EnvironmentFile", "-/etc/promscale/promscale.env"],
        ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
      ]
    ) {
      assertEquals(settings.get(key), value, `${key}=`);
    }
    // The connector cannot reload its configuration: no ExecReload that would pretend to.
    assert(!settings.has("ExecReload"));
  } finally {
    await killAll();
  }
});

Deno.test("the unit's command line with the example config.yml and env file is a valid configuration", async () => {
  const unit = await Deno.readTextFile(UNIT);
  const configText = await Deno.readTextFile(CONFIG_EXAMPLE);
  const envText = await Deno.readTextFile(ENV_EXAMPLE);
  const execStart = unitSettings(unit).find(([k]) => k === "ExecStart")?.[1] ?? "";
  const [binary, ...args] = execStart.split(/\s+/);
  assertEquals(binary, INSTALLED_BINARY);

  const env = envLines(envText, false);
  assert(Object.keys(env).length > 0, "the env example sets nothing");
  const cfg: Config = parseConfig(args, env, readExampleFile(configText));
  assertEquals(cfg.configFile, INSTALLED_CONFIG);
  // Values from both files arrive: the file's HA switch and the env file's password.
  assertEquals(cfg.metrics.ha.enabled, true);
  assertEquals(cfg.db.password, env.PROMSCALE_DB_PASSWORD);
  assertEquals(cfg.db.name, "promscale");
  assertEquals(cfg.web.listenAddress, ":9201");
  assertEquals(cfg.warnings, []);
});

Deno.test("every commented-out example in config.yml.example and promscale.env.example is accepted", async () => {
  const configText = await Deno.readTextFile(CONFIG_EXAMPLE);
  const envText = await Deno.readTextFile(ENV_EXAMPLE);
  const documented = documentedVariables();
  const baseEnv = envLines(envText, false);

  // Config: each paragraph's commented keys (flag names have a "." or "-"),
  // uncommented together (TLS needs both of its files), on top of the
  // active file.
  let checked = 0;
  for (const para of paragraphs(configText)) {
    const keys = para.split("\n").map((l) =>
      /^#\s*([a-z][a-z0-9]*(?:[.-][a-z0-9]+)+:\s.*)$/.exec(l.trim())
    )
      .filter((m) => m !== null).map((m) => m![1]);
    if (keys.length === 0) continue;
    const text = `${configText}\n${keys.join("\n")}\n`;
    const cfg = parseConfig(["--config", INSTALLED_CONFIG], baseEnv, readExampleFile(text));
    assertEquals(cfg.warnings, [], keys.join(", "));
    checked += keys.length;
  }
  assert(checked > 0, "no commented-out key found in config.yml.example");

  // Env: every variable must be one --help documents (an unknown one would
  // be silently ignored), and each paragraph's commented variables together
  // must parse.
  checked = 0;
  for (const name of Object.keys({ ...baseEnv, ...envLines(envText, true) })) {
    assert(documented.has(name), `${name} is not a variable the program reads`);
  }
  for (const para of paragraphs(envText)) {
    const vars = envLines(para, true);
    if (Object.keys(vars).length === 0) continue;
    parseConfig(
      ["--config", INSTALLED_CONFIG],
      { ...baseEnv, ...vars },
      readExampleFile(configText),
    );
    checked += Object.keys(vars).length;
  }
  assert(checked > 0, "no commented-out variable found in promscale.env.example");
});
