/**
 * An in-process connector for tests: the real `startConnector` with a
 * config parsed from flags, listening on a free port of 127.0.0.1.
 */
import { type Connector, startConnector } from "../../src/app.ts";
import { parseConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

/** Starts a connector on database `dbUri` with `--db.connections-max` `pool` and more flags. */
export async function inProcessConnector(
  dbUri: string,
  args: string[] = [],
  opts: { pool?: number; readFile?: (path: string) => string | null } = {},
): Promise<Connector> {
  const cfg = parseConfig(
    [
      "--db.uri",
      dbUri,
      "--web.listen-address",
      "127.0.0.1:0",
      "--db.connections-max",
      String(opts.pool ?? 3),
      ...args,
    ],
    {},
    opts.readFile ?? (() => null),
  );
  return await startConnector(cfg, silentLogger);
}
