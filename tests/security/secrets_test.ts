/**
 * Passwords never leave the process: the database password (in --db.uri or
 * --db.password), the basic auth password and the bearer token appear in
 * no log line (debug level, logfmt and JSON, while bad requests make the
 * connector log), in no /metrics output, in no response body, and in no
 * --help, --version or configuration error output.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { nodeExporterSeries, writeRequestBody } from "../helpers/payload.ts";
import { connectorCommand, killAll, startConnector, tempDir } from "../helpers/procs.ts";

const rand = () => crypto.randomUUID().slice(0, 8);
// Characters that URL encoding changes, so both forms are looked for.
const DB_URI_PASSWORD = `dbUri@p:ss/w?rd#%-${rand()}`;
const DB_PASSWORD = `dbFlag@p:ss/${rand()}`;
const AUTH_PASSWORD = `auth-p@ss-${rand()}`;
const BEARER_TOKEN = `bearer-t0ken-${rand()}`;
const STARTUP_PASSWORD = `startup@pw-${rand()}`;

function forms(secret: string): string[] {
  return [...new Set([secret, encodeURIComponent(secret), encodeURI(secret)])];
}

/** Throws when `text` holds any form of any secret. */
function assertClean(where: string, text: string): void {
  for (const s of [DB_URI_PASSWORD, DB_PASSWORD, AUTH_PASSWORD, BEARER_TOKEN, STARTUP_PASSWORD]) {
    for (const f of forms(s)) {
      const at = text.indexOf(f);
      assert(at < 0, `${where} leaks a secret: …${text.slice(Math.max(0, at - 80), at + 80)}…`);
    }
  }
}

const enc = encodeURIComponent;

async function runMain(args: string[], env: Record<string, string> = {}) {
  const c = connectorCommand(args, { env });
  const out = await new Deno.Command(c.cmd, {
    args: c.args,
    cwd: c.cwd,
    env: c.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, text: d.decode(out.stdout) + d.decode(out.stderr) };
}

/** Sends requests that make the connector log at every level; returns the bodies. */
async function provoke(url: string, auth: string): Promise<string[]> {
  const good = writeRequestBody(nodeExporterSeries(3)) as Uint8Array<ArrayBuffer>;
  const write = { "content-encoding": "snappy", "content-type": "application/x-protobuf" };
  const requests: [string, RequestInit][] = [
    ["/write", { method: "POST", headers: write, body: good }],
    ["/write", { method: "POST", headers: { ...write, authorization: auth + "x" }, body: good }],
    ["/metrics", {
      headers: { authorization: "Basic " + btoa("postgres:" + AUTH_PASSWORD + "!") },
    }],
    ["/write", { method: "POST", headers: { ...write, authorization: auth }, body: good }],
    [
      "/write",
      {
        method: "POST",
        headers: { ...write, authorization: auth },
        body: new Uint8Array([1, 2, 3, 4, 5]),
      },
    ],
    [
      "/write",
      { method: "POST", headers: { authorization: auth, "content-encoding": "gzip" }, body: good },
    ],
    ["/write", { method: "GET", headers: { authorization: auth } }],
    ["/nothing-here", { headers: { authorization: auth } }],
    ["/read", { method: "POST", headers: { authorization: auth }, body: good }],
    ["/healthz", {}],
    ["/metrics", { headers: { authorization: auth } }],
  ];
  const bodies: string[] = [];
  for (const [path, init] of requests) {
    const res = await fetch(`${url}${path}`, { ...init, signal: AbortSignal.timeout(30_000) });
    bodies.push(`${path} ${res.status} ${[...res.headers].join(" ")}\n${await res.text()}`);
  }
  return bodies;
}

Deno.test({
  name: "passwords appear in no log, /metrics, response body or --help output",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const db = await freshDatabase("sec_secrets");
    try {
      const dir = await tempDir("promscale-secrets-");
      // 1. Password in --db.uri, basic auth, debug logs in logfmt.
      const uri = new URL(db.uri);
      uri.password = enc(DB_URI_PASSWORD);
      assert(uri.toString().includes(enc(DB_URI_PASSWORD)));
      const a = await startConnector({
        dbUri: uri.toString(),
        args: [
          "--web.auth.username",
          "postgres",
          "--web.auth.password",
          AUTH_PASSWORD,
          "--telemetry.log.level",
          "debug",
        ],
      });
      const basic = "Basic " + btoa(`postgres:${AUTH_PASSWORD}`);
      const bodiesA = await provoke(a.url, basic);
      assertEquals(bodiesA[3].split(" ")[1], "204", bodiesA[3]);
      // 2. --db.password and a bearer token from a file, JSON logs.
      await Deno.writeTextFile(`${dir}/token`, BEARER_TOKEN + "\n");
      const dbu = new URL(db.uri);
      const b = await startConnector({
        dbUri: "",
        args: [
          "--db.host",
          dbu.hostname,
          "--db.port",
          dbu.port || "5432",
          "--db.user",
          decodeURIComponent(dbu.username),
          "--db.password",
          DB_PASSWORD,
          "--db.name",
          db.name,
          "--web.auth.bearer-token-file",
          `${dir}/token`,
          "--telemetry.log.level",
          "debug",
          "--telemetry.log.format",
          "json",
        ],
      });
      const bodiesB = await provoke(b.url, `Bearer ${BEARER_TOKEN}`);
      assertEquals(bodiesB[3].split(" ")[1], "204", bodiesB[3]);
      await a.stop();
      await b.stop();
      const logsA = a.proc.output();
      const logsB = b.proc.output();
      assert(logsA.split("\n").length < 200 && logsB.split("\n").length < 200, "logs cut short");
      // The bad requests were logged (the check below reads real log lines).
      assert(/level=(debug|warn|error) .*status=401/.test(logsA), `no refusal logged:\n${logsA}`);
      assert(
        /"level":"(debug|warn|error)".*"status":401/.test(logsB),
        `no refusal logged:\n${logsB}`,
      );
      assertClean("logfmt logs", logsA);
      assertClean("JSON logs", logsB);
      assertClean("response bodies and headers", [...bodiesA, ...bodiesB].join("\n"));

      // 3. A start that fails: the error names the database, not the password.
      const failedUri = new URL(db.uri);
      failedUri.password = enc(STARTUP_PASSWORD);
      failedUri.pathname = `/${db.name}_missing`;
      const failed = await runMain([
        "--db.uri",
        failedUri.toString(),
        "--db.connection-timeout",
        "1s",
        "--web.listen-address",
        "127.0.0.1:0",
      ]);
      assertEquals(failed.code, 1, failed.text);
      assert(failed.text.includes("_missing"), failed.text);
      assertClean("a failed start", failed.text);

      // 4. --help, --version and configuration errors, with every secret given.
      const secretsArgs = [
        "--db.uri",
        uri.toString(),
        "--web.auth.username",
        "u",
        "--web.auth.password",
        AUTH_PASSWORD,
      ];
      const env = {
        PROMSCALE_DB_PASSWORD: DB_PASSWORD,
        PROMSCALE_WEB_AUTH_BEARER_TOKEN: BEARER_TOKEN,
      };
      for (
        const args of [
          ["--help"],
          [...secretsArgs, "--help"],
          [...secretsArgs, "--version"],
          [...secretsArgs, "--db.port", "nope"],
          [...secretsArgs, "--web.auth.bearer-token", BEARER_TOKEN],
          ["--db.uri", `mysql://root:${enc(DB_URI_PASSWORD)}@127.0.0.1/db`],
          ["--db.uri", `postgres://root:${enc(DB_URI_PASSWORD)}@127.0.0.1/db`, "--no-such-flag"],
          ["--db.password", DB_PASSWORD, "--db.connections-max", "-1"],
        ]
      ) {
        const r = await runMain(args, env);
        assert(r.text.trim() !== "", `no output for ${args.join(" ")}`);
        assertClean(`output of ${args.map((x) => x.slice(0, 12)).join(" ")}`, r.text);
      }
    } finally {
      await killAll();
      await db.drop();
    }
  },
});
