/**
 * Log lines carry `caller=<file>:<line>` of the code that logged, as
 * Promscale's did (issue 20), in logfmt and in JSON.
 */
import assert from "node:assert/strict";
import { Logger } from "../../src/telemetry/log.ts";

/** The line of the statement after the one calling this. */
function nextLine(): number {
  const frame = new Error().stack!.split("\n")[2];
  return Number(/:(\d+):\d+\)?$/.exec(frame)![1]) + 1;
}

Deno.test("logfmt lines name the file and line that logged", () => {
  const lines: string[] = [];
  const log = new Logger("debug", "logfmt", (l) => lines.push(l));
  const at = nextLine();
  log.info("Promscale connector started", { pool: 3 });
  log.log("warn", "through log()");
  assert.match(lines[0], new RegExp(`^ts=\\S+ level=info caller=log_caller_test\\.ts:${at} msg=`));
  assert.match(lines[1], new RegExp(` caller=log_caller_test\\.ts:${at + 1} msg=`));
});

Deno.test("JSON lines have a caller field; a disabled level writes nothing", () => {
  const lines: Record<string, unknown>[] = [];
  const log = new Logger("info", "json", (l) => lines.push(JSON.parse(l)));
  const at = nextLine();
  log.error("Cannot connect", { err: new Error("refused") });
  log.debug("not written");
  assert.equal(lines.length, 1);
  assert.equal(lines[0].caller, `log_caller_test.ts:${at}`);
  assert.deepEqual(Object.keys(lines[0]).slice(0, 4), ["ts", "level", "caller", "msg"]);
});
