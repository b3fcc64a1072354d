/**
 * A connector with HA data for the operator's-view tests: two clusters (one
 * of them named `<script>`, as an attacker could), each led by replica r1,
 * then a leader change to r2 in cluster "prod" after r1 falls silent. Short
 * HA timings so the change takes about a second.
 */
import type { Connector } from "../../src/app.ts";
import { inProcessConnector } from "../helpers/connector.ts";
import { type FreshDatabase, freshDatabase } from "../helpers/db.ts";
import { writeRequestBody } from "../helpers/payload.ts";

/** The hostile cluster name. */
export const EVIL_CLUSTER = `<script>alert("x")</script>`;

/** The HA flags of the fixture (failover after 1 s of silence). */
export const HA_FLAGS = [
  "--metrics.high-availability",
  "--metrics.high-availability.failover-timeout=1s",
  "--metrics.high-availability.lease-refresh=200ms",
  "--metrics.high-availability.lease-timeout=2s",
];

/** POSTs one sample of `up` and of `node_load1` from `replica` of `cluster`; returns the status. */
export async function writeHa(
  url: string,
  cluster: string,
  replica: string,
  t: number,
  headers: Record<string, string> = {},
): Promise<number> {
  const body = writeRequestBody(["up", "node_load1"].map((name) => ({
    labels: { __name__: name, __replica__: replica, cluster, instance: "node-1:9100", job: "node" },
    samples: [{ value: 1, timestamp: t }],
  })));
  const res = await fetch(`${url}/write`, {
    method: "POST",
    headers: {
      "content-encoding": "snappy",
      "content-type": "application/x-protobuf",
      ...headers,
    },
    body: body as Uint8Array<ArrayBuffer>,
  });
  await res.body?.cancel();
  return res.status;
}

/** A connector, its database and the state the tests expect. */
export interface OpsFixture {
  db: FreshDatabase;
  connector: Connector;
  close(): Promise<void>;
}

/**
 * Starts a connector (with `extraFlags`), writes two clusters and moves the
 * leader of "prod" from r1 to r2. Samples are stamped with the current time,
 * so the leases fall into the page's 24 h window.
 */
export async function haFixture(
  prefix: string,
  extraFlags: string[] = [],
  headers: Record<string, string> = {},
): Promise<OpsFixture> {
  const db = await freshDatabase(prefix);
  let connector: Connector | null = null;
  try {
    connector = await inProcessConnector(db.uri, [...HA_FLAGS, ...extraFlags]);
    const url = connector.url;
    const expect = async (cluster: string, replica: string, t: number) => {
      const status = await writeHa(url, cluster, replica, t, headers);
      if (status !== 204) throw new Error(`write ${cluster}/${replica} answered ${status}`);
    };
    let t = Date.now() - 60_000;
    for (let i = 0; i < 5; i++, t += 1000) {
      await expect("prod", "r1", t);
      await expect(EVIL_CLUSTER, "r1", t);
      await expect("prod", "r2", t); // a follower's copy: staged
    }
    // r1 falls silent; r2 goes on and takes over once the failover timeout
    // has passed on the database's clock.
    const deadline = Date.now() + 15_000;
    while (true) {
      await new Promise((r) => setTimeout(r, 300));
      t += 1000;
      await expect("prod", "r2", t);
      const [row] = await db.sql<{ leader_name: string }[]>`
        SELECT leader_name FROM _prom_catalog.ha_leases WHERE cluster_name = 'prod'`;
      if (row?.leader_name === "r2") break;
      if (Date.now() > deadline) throw new Error("no leader change within 15 s");
    }
    await expect("prod", "r2", t + 1000);
    const c = connector;
    return {
      db,
      connector: c,
      close: async () => {
        await c.stop();
        await db.drop();
      },
    };
  } catch (err) {
    await connector?.stop().catch(() => {});
    await db.drop();
    throw err;
  }
}
