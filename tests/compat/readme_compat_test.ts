/**
 * The README's compatibility table ("Upgrading from Promscale") backs every
 * row that says "kept" or "changed" with a test, and the tests it names
 * exist: each `file` in the Test column is a file under tests/, and each
 * quoted name (a prefix when it ends with "…") occurs in the file just
 * before it.
 */
import assert from "node:assert/strict";
import { REPO_ROOT } from "../helpers/procs.ts";

async function compatRows(): Promise<{ item: string; status: string; tests: string }[]> {
  const readme = await Deno.readTextFile(`${REPO_ROOT}/README.md`);
  const start = readme.indexOf("\n## Upgrading from Promscale\n");
  assert.ok(start >= 0, 'README has no "Upgrading from Promscale" section');
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const lines = section.slice(section.indexOf("\n| Promscale") + 1).split("\n");
  const out = [];
  // The header, the separator, then rows until the table ends.
  for (const line of lines.slice(2)) {
    if (!line.startsWith("| ")) break;
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
    assert.equal(cells.length, 4, line);
    out.push({ item: cells[0], status: cells[1], tests: cells[3] });
  }
  return out;
}

Deno.test("every kept or changed row of the README's compatibility table names existing tests", async () => {
  const rows = await compatRows();
  assert.ok(rows.length >= 20, `only ${rows.length} rows`);
  for (const r of rows) {
    assert.ok(["kept", "changed", "missing"].includes(r.status), `${r.item}: status ${r.status}`);
    if (r.status === "missing" && r.tests === "") continue;
    const refs = [...r.tests.matchAll(/`([^`]+_test\.ts)`((?:,? ?"[^"]+")*)/g)];
    assert.ok(refs.length > 0, `row "${r.item}" names no test`);
    for (const [, file, names] of refs) {
      const text = await Deno.readTextFile(`${REPO_ROOT}/tests/${file}`);
      for (const [, quoted] of names.matchAll(/"([^"]+)"/g)) {
        const name = quoted.replace(/\s*…$/, "").replaceAll("\\*", "*");
        assert.ok(text.includes(name), `row "${r.item}": ${file} has no test "${name}"`);
      }
    }
  }
});
