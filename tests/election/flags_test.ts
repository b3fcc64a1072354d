/**
 * The legacy election's flags as an operator meets them: bad combinations
 * exit 2 with one line before anything connects or listens.
 */
import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort } from "../helpers/ports.ts";
import { killAll, spawnConnector } from "../helpers/procs.ts";

Deno.test("legacy election flags: combined with HA or given alone, exit 2 with one line", async () => {
  try {
    // A closed port: the error must come before any attempt to connect.
    const deadDb = `postgres://postgres@127.0.0.1:${freePort()}/postgres`;
    const cases: [string[], string][] = [
      [[
        "--leader-election-pg-advisory-lock-id",
        "42",
        "--leader-election-pg-advisory-lock-prometheus-timeout",
        "10s",
        "--metrics.high-availability",
      ], "cannot be combined with --metrics.high-availability"],
      [["--leader-election-pg-advisory-lock-id", "42"], "must be given together"],
      [["--leader-election-pg-advisory-lock-prometheus-timeout", "10s"], "must be given together"],
    ];
    await Promise.all(cases.map(async ([args, mentions]) => {
      const p = spawnConnector([
        "--db.uri",
        deadDb,
        "--web.listen-address",
        `127.0.0.1:${freePort()}`,
        ...args,
      ]);
      const status = await p.wait();
      const lines = p.output().split("\n").filter((l) => l !== "");
      const what = `${args.join(" ")}:\n${p.output()}`;
      assertEquals(status.code, 2, what);
      assertEquals(lines.length, 1, what);
      assertStringIncludes(lines[0], mentions, what);
    }));
  } finally {
    await killAll();
  }
});
