/**
 * The alert rules (packaging/mixin/alerts.yaml) pass `promtool check rules`
 * and their unit tests (`promtool test rules alerts_test.yaml`), and name
 * only metrics the connector exposes.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { REPO_ROOT } from "../helpers/procs.ts";
import { exposedMetricNames } from "./metric_names.ts";
import { parseYaml } from "../../deps.ts";

const PROMTOOL = Deno.env.get("PROMTOOL_BIN") ?? "/usr/bin/promtool";
const MIXIN = `${REPO_ROOT}/packaging/mixin`;

async function promtool(...args: string[]): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(PROMTOOL, {
      args,
      cwd: MIXIN,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
  } catch (err) {
    throw new Error(
      `cannot run ${PROMTOOL} (Debian package prometheus; set PROMTOOL_BIN): ${
        (err as Error).message
      }`,
    );
  }
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert(out.success, `promtool ${args.join(" ")} failed:\n${text}`);
  return text;
}

Deno.test("promtool check rules accepts packaging/mixin/alerts.yaml", async () => {
  const out = await promtool("check", "rules", "alerts.yaml");
  assert(/SUCCESS: \d+ rules found/.test(out), out);
});

Deno.test("promtool test rules: every alert fires and stays quiet as alerts_test.yaml says", async () => {
  const out = await promtool("test", "rules", "alerts_test.yaml");
  assert(out.includes("SUCCESS"), out);
});

Deno.test("The alert rules use only metrics the connector exposes, and each has a unit test", async () => {
  const doc = parseYaml(await Deno.readTextFile(`${MIXIN}/alerts.yaml`)) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  const tests = await Deno.readTextFile(`${MIXIN}/alerts_test.yaml`);
  const exposed = exposedMetricNames();
  const rules = doc.groups.flatMap((g) => g.rules);
  assertEquals(rules.length >= 7, true);
  for (const r of rules) {
    for (const name of r.expr.match(/\bpromscale_[a-z0-9_]+/g) ?? []) {
      assert(exposed.has(name), `alert ${r.alert} uses ${name}, which /metrics does not expose`);
    }
    assert(tests.includes(`alertname: ${r.alert}\n`), `alert ${r.alert} has no unit test`);
  }
});
