/**
 * promscale (Deno edition): parse config → open pool → migrate → start
 * server; on SIGINT/SIGTERM the same in reverse. Exit status 2 means bad
 * configuration, 1 a failure at start.
 */
import { ConfigError, ConfigExit, loadConfig } from "./src/config.ts";
import { startConnector } from "./src/app.ts";
import { Logger } from "./src/telemetry/log.ts";

async function main(): Promise<number> {
  let cfg;
  try {
    cfg = loadConfig(Deno.args);
  } catch (err) {
    if (err instanceof ConfigExit) {
      console.log(err.output);
      return err.code;
    }
    if (err instanceof ConfigError) {
      console.error(`promscale: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const log = new Logger(cfg.telemetry.logLevel, cfg.telemetry.logFormat);
  // A stray rejection inside a library (a database driver callback with no
  // listener) must not take down a connector serving live traffic: every
  // request already maps its own failures to a status. Log it instead.
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    const reason = e.reason as Error | undefined;
    log.error("Unhandled rejection (ignored)", {
      err: reason?.message ?? String(e.reason),
    });
  });
  let connector;
  try {
    connector = await startConnector(cfg, log);
  } catch (err) {
    log.error("Cannot start", { err: (err as Error).message });
    return 1;
  }
  if (!connector.server) {
    log.info("Startup only: migrations done, exiting");
    return 0;
  }
  const { promise, resolve } = Promise.withResolvers<void>();
  const onSignal = (sig: Deno.Signal) => () => {
    log.info("Received signal", { signal: sig });
    resolve();
  };
  const signals: [Deno.Signal, () => void][] = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
  ];
  for (const [s, f] of signals) Deno.addSignalListener(s, f);
  await Promise.race([promise, connector.server.finished]);
  await connector.stop();
  for (const [s, f] of signals) Deno.removeSignalListener(s, f);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main());
}
