/**
 * README.md's examples work as written: every promscale command line in a
 * shell block is a configuration the program accepts, every config.yml
 * example parses, the Prometheus snippets pass `promtool check config`, and
 * the systemd drop-in passes `systemd-analyze verify` on top of the unit.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { killAll, REPO_ROOT, tempDir } from "../helpers/procs.ts";
import { ConfigError, ConfigExit, parseConfig } from "../../src/config.ts";

const README = `${REPO_ROOT}/README.md`;

interface Block {
  lang: string;
  text: string;
  line: number;
}

/** The fenced code blocks of a Markdown file. */
function codeBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const re = /^```(\w*)\n([\s\S]*?)^```$/gm;
  for (const m of markdown.matchAll(re)) {
    blocks.push({
      lang: m[1],
      text: m[2],
      line: markdown.slice(0, m.index).split("\n").length,
    });
  }
  return blocks;
}

/** Splits a shell line into words, honouring '…' and "…" quotes; operators are words. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'" || c === '"') {
      const end = line.indexOf(c, i + 1);
      assert(end > i, `unbalanced quote in: ${line}`);
      word += line.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if (c === "#" && !inWord) {
      break; // a comment
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** One command of a shell block: the program's arguments and the variables set before it. */
interface PromscaleCommand {
  source: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * The commands in a shell block that run the connector: `promscale …`,
 * `…/promscale …`, `deno task start …` and `deno run … main.ts|promscale.js …`.
 */
function promscaleCommands(script: string): PromscaleCommand[] {
  const out: PromscaleCommand[] = [];
  const lines = script.replace(/\\\n\s*/g, " ").split("\n");
  for (const line of lines) {
    let cmd: string[] = [];
    const flush = () => {
      const env: Record<string, string> = {};
      let words = cmd;
      while (words.length > 0) {
        const assign = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(words[0]);
        if (assign) env[assign[1]] = assign[2];
        else if (words[0] !== "sudo" && words[0] !== "npx" && words[0] !== "exec") break;
        words = words.slice(1);
      }
      let args: string[] | null = null;
      if (/(^|\/)promscale$/.test(words[0] ?? "")) args = words.slice(1);
      else if (words[0] === "deno" && words[1] === "task" && words[2] === "start") {
        args = words.slice(3);
      } else if (words[0] === "deno" && words[1] === "run") {
        const file = words.findIndex((w, i) => i > 1 && !w.startsWith("-"));
        if (file > 0 && /(^|\/)(main\.ts|promscale\.js)$/.test(words[file])) {
          args = words.slice(file + 1);
        }
      }
      if (args !== null) out.push({ source: line.trim(), args, env });
      cmd = [];
    };
    for (const w of shellWords(line)) {
      if (["&&", "||", "|", ";", "&"].includes(w)) flush();
      else if (/^\d?>/.test(w)) flush(); // a redirection ends what we parse
      else cmd.push(w);
    }
    flush();
  }
  return out;
}

/** Config files the README's commands may name: the packaging example stands in for all. */
function readFileFor(exampleConfig: string) {
  return (path: string): string | null => {
    if (path === "config.yml") return null; // the default: none in the working directory
    if (/\.ya?ml$/.test(path)) return exampleConfig;
    return "example-secret\n"; // --web.auth.password-file and the like
  };
}

Deno.test("every promscale command line in README.md is a configuration the program accepts", async () => {
  const readme = await Deno.readTextFile(README);
  const exampleConfig = await Deno.readTextFile(`${REPO_ROOT}/packaging/config.yml.example`);
  const commands = codeBlocks(readme)
    .filter((b) => b.lang === "sh")
    .flatMap((b) => promscaleCommands(b.text));
  // Quick start, download and run, building, the bundle, Promscale's HA form.
  assert(commands.length >= 6, `only ${commands.length} commands found`);
  const sources = commands.map((c) => c.source).join("\n");
  assert(sources.includes("-metrics.high-availability "), "Promscale's single-dash form is gone");
  for (const c of commands) {
    try {
      const cfg = parseConfig(c.args, c.env, readFileFor(exampleConfig));
      assertEquals(cfg.warnings, [], c.source);
      if (c.args.some((a) => /high-availability$/.test(a))) {
        assert(cfg.metrics.ha.enabled, `HA is not on for: ${c.source}`);
      }
    } catch (err) {
      if (err instanceof ConfigExit) continue; // --version, --help
      if (err instanceof ConfigError) {
        throw new Error(`README command is rejected: ${c.source}: ${err.message}`);
      }
      throw err;
    }
  }
});

Deno.test("every config.yml example in README.md is accepted", async () => {
  const readme = await Deno.readTextFile(README);
  const configs = codeBlocks(readme).filter((b) =>
    b.lang === "yaml" && /^[a-z][a-z0-9-]*\.[a-z0-9.-]+:/m.test(b.text)
  );
  assert(configs.length > 0, "no config.yml example found");
  for (const b of configs) {
    const cfg = parseConfig(["--config", "config.yml"], {}, () => b.text);
    assertEquals(cfg.configFile, "config.yml");
    assertEquals(cfg.warnings, [], `README.md:${b.line}`);
  }
});

Deno.test("the Prometheus snippets in README.md pass promtool check config", async () => {
  try {
    const readme = await Deno.readTextFile(README);
    const snippets = codeBlocks(readme).filter((b) =>
      b.lang === "yaml" && /^(remote_write|global):/m.test(b.text)
    );
    assert(snippets.length >= 2, `only ${snippets.length} Prometheus snippets found`);
    const dir = await tempDir("promscale-readme-");
    for (const b of snippets) {
      const path = `${dir}/prometheus-${b.line}.yml`;
      await Deno.writeTextFile(path, b.text);
      let out: Deno.CommandOutput;
      try {
        out = await new Deno.Command(Deno.env.get("PROMTOOL_BIN") ?? "promtool", {
          args: ["check", "config", path],
          stdout: "piped",
          stderr: "piped",
        }).output();
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) {
          throw new Error("promtool is missing: install Debian's prometheus package");
        }
        throw err;
      }
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 0, `README.md:${b.line}:\n${text}`);
    }
  } finally {
    await killAll();
  }
});

Deno.test("the systemd drop-in in README.md verifies on top of the unit", async () => {
  try {
    const readme = await Deno.readTextFile(README);
    const dropIns = codeBlocks(readme).filter((b) =>
      b.lang === "ini" && b.text.startsWith("[Service]")
    );
    assertEquals(dropIns.length, 1, "expected one [Service] drop-in in README.md");
    const dir = await tempDir("promscale-dropin-");
    await Deno.writeTextFile(`${dir}/promscale`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const unit = await Deno.readTextFile(`${REPO_ROOT}/packaging/promscale.service`);
    await Deno.writeTextFile(
      `${dir}/promscale.service`,
      unit.replaceAll("/usr/local/bin/promscale", `${dir}/promscale`),
    );
    await Deno.mkdir(`${dir}/promscale.service.d`);
    await Deno.writeTextFile(`${dir}/promscale.service.d/override.conf`, dropIns[0].text);
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/promscale.service`],
      // The trailing ":" keeps the default search path after ours, where drop-ins are found.
      env: { SYSTEMD_UNIT_PATH: `${dir}:`, SYSTEMD_LOG_COLOR: "0" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, text);
    assertEquals(text.split("\n").filter((l) => l.includes("promscale")), []);

    // The variables the drop-in sets are ones the program reads.
    const vars = [...dropIns[0].text.matchAll(/^Environment=(PROMSCALE_[A-Z0-9_]+)=/gm)]
      .map((m) => m[1]);
    assert(vars.length > 0);
    let help = "";
    try {
      parseConfig(["--help"], {}, () => null);
    } catch (err) {
      if (err instanceof ConfigExit) help = err.output;
    }
    for (const v of vars) assert(help.includes(`env: ${v}`), `${v} is not read by the program`);
  } finally {
    await killAll();
  }
});
