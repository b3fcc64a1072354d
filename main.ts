/**
 * promscale (Deno edition): parse config → open pool → migrate → start
 * server; on SIGINT/SIGTERM the same in reverse. Exit status 2 means bad
 * configuration, 1 a failure at start.
 */
import { ConfigError, ConfigExit, embeddedRefusal, loadConfig } from "./src/config.ts";
import { startConnector } from "./src/app.ts";
import { Logger } from "./src/telemetry/log.ts";
import { type EmbeddedDatabase, startEmbedded } from "./src/storage/embedded.ts";

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
  const refused = embeddedRefusal(cfg);
  if (refused !== null) {
    console.error(`promscale: ${refused}`);
    return 2;
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
  // No database configured at all: PGlite in this process (src/storage/embedded.ts).
  let embedded: EmbeddedDatabase | null = null;
  if (cfg.db.embedded !== null) {
    try {
      embedded = await startEmbedded(cfg.db.embedded);
    } catch (err) {
      log.error("Cannot start", { err: (err as Error).message });
      return 1;
    }
    log.info(
      "Embedded database in use (no database configured); HA across several connectors needs " +
        "a shared PostgreSQL via --db.uri",
      {
        dir: embedded.dir,
        sql: embedded.sqlUri ?? "off (--db.embedded-sql-listen 127.0.0.1:5433 serves psql)",
      },
    );
    cfg = {
      ...cfg,
      db: {
        ...cfg.db,
        uri: embedded.uri,
        sslMode: "disable",
        // One backend runs one statement at a time: more connections only queue.
        connectionsMax: cfg.db.connectionsMax || 4,
      },
    };
  }
  let connector;
  try {
    connector = await startConnector(cfg, log);
  } catch (err) {
    log.error("Cannot start", { err: (err as Error).message });
    await embedded?.stop();
    return 1;
  }
  if (!connector.server) {
    log.info("Startup only: migrations done, exiting");
    await embedded?.stop();
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
  let code = 0;
  const failed = embedded?.failed.then((err) => {
    log.error("Stopping", { err: err.message });
    code = 1;
  });
  await Promise.race([promise, connector.server.finished, ...(failed ? [failed] : [])]);
  await connector.stop();
  await embedded?.stop();
  for (const [s, f] of signals) Deno.removeSignalListener(s, f);
  return code;
}

if (import.meta.main) {
  Deno.exit(await main());
}
