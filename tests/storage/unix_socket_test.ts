/**
 * --db.uri / --db.host with a Unix socket directory, as libpq accepts it.
 */
import { assertEquals } from "../helpers/assert.ts";
import { openPool, unixSocket } from "../../src/storage/db.ts";

const SOCKET_DIR = "/var/run/postgresql";
const hasSocket = (() => {
  try {
    return Deno.statSync(`${SOCKET_DIR}/.s.PGSQL.5432`).isSocket === true;
  } catch {
    return false;
  }
})();

Deno.test("unixSocket() finds a socket directory as an encoded host or a host parameter", () => {
  assertEquals(unixSocket("postgres://u@%2Fvar%2Frun%2Fpostgresql:5433/db"), {
    uri: "postgres://u@%2Fvar%2Frun%2Fpostgresql:5433/db",
    path: "/var/run/postgresql/.s.PGSQL.5433",
  });
  assertEquals(unixSocket("postgres://u@localhost/db?host=/tmp&sslmode=disable"), {
    uri: "postgres://u@localhost/db?sslmode=disable",
    path: "/tmp/.s.PGSQL.5432",
  });
  assertEquals(unixSocket("postgres://u@db.example:5432/db"), {
    uri: "postgres://u@db.example:5432/db",
  });
});

Deno.test({
  name: "openPool() connects through the local server's Unix socket",
  ignore: !hasSocket,
  fn: async () => {
    const sql = openPool({
      uri: `postgres://postgres@${encodeURIComponent(SOCKET_DIR)}:5432/postgres?sslmode=disable`,
      max: 1,
      app: "promscale-test",
      connectTimeoutMs: 5_000,
      statementTimeoutMs: 5_000,
      sslMode: "disable",
    });
    try {
      const [row] = await sql<{ tcp: boolean }[]>`SELECT inet_server_addr() IS NOT NULL AS tcp`;
      assertEquals(row.tcp, false, "the session runs over the Unix socket, not TCP");
    } finally {
      await sql.end();
    }
  },
});
