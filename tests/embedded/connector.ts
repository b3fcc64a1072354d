/**
 * Runs `deno run -A main.ts` with no database settings at all, in a given
 * working directory, with libpq's variables pointing nowhere: the embedded
 * database is what it must use. Shared by the tests and bench/embedded.ts.
 */
import { freePort } from "../helpers/ports.ts";
import { type Proc, REPO_ROOT, spawnProcess, waitForHttp } from "../helpers/procs.ts";
import { ReadRequest, ReadResponse } from "../../proto/messages.ts";
import { snappy } from "../../deps.ts";

/** A connector on the embedded database. */
export interface EmbeddedConnector {
  proc: Proc;
  url: string;
  /** The loopback SQL address it serves (`--db.embedded-sql-listen`). */
  sqlUri: string;
}

/**
 * libpq's variables set to a server that does not exist: they must not count
 * as a configured database.
 */
export const PG_NOWHERE: Record<string, string> = {
  PGHOST: "nowhere.invalid",
  PGPORT: "1",
  PGUSER: "nobody",
  PGDATABASE: "nothing",
};

/** Starts the connector in `cwd` (its data goes to `cwd/promscale-data` unless `args` say otherwise). */
export async function startEmbeddedConnector(
  cwd: string,
  args: string[] = [],
  timeoutMs = 180_000,
): Promise<EmbeddedConnector> {
  const port = freePort();
  const sqlPort = freePort();
  const proc = spawnProcess("embedded-connector", Deno.execPath(), [
    "run",
    "-A",
    `${REPO_ROOT}/main.ts`,
    "--web.listen-address",
    `127.0.0.1:${port}`,
    "--db.embedded-sql-listen",
    `127.0.0.1:${sqlPort}`,
    ...args,
  ], { cwd, env: { NO_COLOR: "1", ...PG_NOWHERE } });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/healthz`, { timeoutMs, proc });
  } catch (err) {
    await proc.stop(2_000);
    throw err;
  }
  return { proc, url, sqlUri: `postgres://postgres@127.0.0.1:${sqlPort}/postgres` };
}

/** A series as remote read returns it. */
export interface ReadSeries {
  labels: Record<string, string>;
  samples: { value: number; timestamp: number }[];
}

/** Remote read of one query (`__name__` = `metric`) over [start, end] ms. */
export async function remoteRead(
  url: string,
  metric: string,
  start: number,
  end: number,
): Promise<ReadSeries[]> {
  const body = snappy.compress(
    ReadRequest.encode(ReadRequest.fromObject({
      queries: [{
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers: [{ type: 0, name: "__name__", value: metric }],
      }],
    })).finish(),
  ) as Uint8Array<ArrayBuffer>;
  const res = await fetch(`${url}/read`, {
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf",
      "x-prometheus-remote-read-version": "0.1.0",
    },
    body,
  });
  const raw = new Uint8Array(await res.arrayBuffer());
  if (res.status !== 200) {
    throw new Error(`Remote read answered ${res.status}: ${new TextDecoder().decode(raw)}`);
  }
  const msg = ReadResponse.toObject(ReadResponse.decode(snappy.uncompress(raw)), {
    longs: Number,
    defaults: true,
  }) as {
    results: {
      timeseries: {
        labels: { name: string; value: string }[];
        samples: { value: number; timestamp: number }[];
      }[];
    }[];
  };
  return (msg.results[0]?.timeseries ?? []).map((ts) => ({
    labels: Object.fromEntries(ts.labels.map((l) => [l.name, l.value])),
    samples: ts.samples.map((s) => ({ value: s.value, timestamp: s.timestamp })),
  }));
}
