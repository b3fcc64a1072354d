/**
 * The status page in a real browser: headless Chromium (Debian's
 * `chromium` package) loads `GET /` of a connector with two clusters and a
 * leader change, renders it (DOM dump and screenshots at phone and desktop
 * widths, into the test's temporary directory) and the rendered text is
 * checked: leaders, the change, the hostile cluster name shown as text and
 * never run as a script.
 *
 * Without Chromium the test is skipped with a message, except on CI (CI
 * set), where it fails: `bash .ci/run` installs `chromium`. Set
 * CHROMIUM_BIN to use another binary, and UPDATE_SCREENSHOT=1 to copy the
 * phone screenshot to docs/status.png (the README's picture).
 */
import { assert, assertStringIncludes } from "../helpers/assert.ts";
import { killAll, REPO_ROOT, tempDir } from "../helpers/procs.ts";
import { EVIL_CLUSTER, haFixture } from "./fixture.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_BIN") ?? "/usr/bin/chromium";
const present = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const onCi = (Deno.env.get("CI") ?? "") !== "";
if (!present && !onCi) {
  console.warn(
    `SKIPPED tests/ops/browser_test.ts: ${CHROMIUM} not found ` +
      "(apt-get install chromium, or set CHROMIUM_BIN); on CI this test fails instead",
  );
}

/** Runs Chromium headless on `url` with `args` (killed after 60 s); returns its stdout. */
async function chromium(dir: string, url: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--disable-gpu",
      "--no-sandbox",
      "--no-first-run",
      "--disable-extensions",
      "--hide-scrollbars",
      `--user-data-dir=${dir}/profile`,
      ...args,
      url,
    ],
    env: { HOME: dir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`chromium exited with ${out.code}:\n${dec.decode(out.stderr).slice(-3000)}`);
  }
  return dec.decode(out.stdout);
}

/** The text a reader sees in serialised HTML: tags and style dropped, entities decoded. */
function visibleText(html: string): string {
  return html
    .replace(/<style[\s\S]*?<\/style>/gi, " ")
    .replace(/<title>[\s\S]*?<\/title>/gi, " ")
    .replace(/<[^>]+>/g, " ")
    .replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ");
}

async function assertPng(path: string): Promise<void> {
  const bytes = await Deno.readFile(path);
  assert(bytes.length > 5_000, `${path} is only ${bytes.length} bytes`);
  assert(
    bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47,
    `${path} is not a PNG`,
  );
}

Deno.test({
  name: "The status page renders in Chromium with both clusters, the leader change, escaped names",
  ignore: !present && !onCi,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!present) {
      throw new Error(
        `${CHROMIUM} not found and CI is set: the browser test must run on CI ` +
          "(bash .ci/run installs chromium)",
      );
    }
    const f = await haFixture("ops_browser");
    try {
      const dir = await tempDir("promscale-browser-");
      const url = `${f.connector.url}/`;

      const dom = await chromium(dir, url, ["--dump-dom", "--virtual-time-budget=2000"]);
      // The hostile name is text: no script element made it into the DOM.
      assert(!/<script/i.test(dom), "a <script> element was rendered");
      assertStringIncludes(dom, "&lt;script&gt;alert");
      const text = visibleText(dom);
      for (
        const expected of [
          "promscale 0.1.0",
          "Database",
          "reachable",
          "Schema version",
          "connections in use",
          "Samples stored",
          "Writes answered 503",
          "HA clusters (2)",
          "prod",
          EVIL_CLUSTER,
          "Leader changes, 24 h 1",
          "Leader changes, 24 h 0",
          "Leader r2",
          "Leader r1",
          "Last heard",
        ]
      ) {
        assertStringIncludes(text, expected, `rendered text lacks "${expected}"`);
      }
      assert(!text.includes("not reachable"), "the database is reported unreachable");
      // The timeline shows both leaders of "prod" and a change mark.
      assert((dom.match(/class="change"/g) ?? []).length === 1, "not one leader change drawn");

      const phone = `${dir}/status-phone.png`;
      const desktop = `${dir}/status-desktop.png`;
      await chromium(dir, url, [`--screenshot=${phone}`, "--window-size=412,1900"]);
      await chromium(dir, url, [`--screenshot=${desktop}`, "--window-size=1280,1100"]);
      await assertPng(phone);
      await assertPng(desktop);
      if (Deno.env.get("UPDATE_SCREENSHOT") === "1") {
        await Deno.copyFile(phone, `${REPO_ROOT}/docs/status.png`);
      }
    } finally {
      await f.close();
      await killAll();
    }
  },
});
