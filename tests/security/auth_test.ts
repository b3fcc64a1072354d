/**
 * Basic and bearer authentication protect every endpoint but /healthz:
 * missing or wrong credentials get 401 with a WWW-Authenticate challenge and
 * a one-line reason; right ones pass. Also covers the authorizer alone
 * (malformed headers) and the TLS listener with a certificate made here.
 */
import { inProcessConnector } from "../helpers/connector.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";
import { freshDatabase } from "../helpers/db.ts";
import { nodeExporterSeries, writeRequestBody } from "../helpers/payload.ts";
import { authorizer } from "../../src/auth.ts";

const WRITE_HEADERS = {
  "content-encoding": "snappy",
  "content-type": "application/x-protobuf",
  "x-prometheus-remote-write-version": "0.1.0",
};

function basic(user: string, password: string): string {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

/** Starts an in-process connector on a fresh database with extra flags. */
async function connectorWith(prefix: string, flags: string[], files: Record<string, string> = {}) {
  const db = await freshDatabase(prefix);
  try {
    const c = await inProcessConnector(db.uri, flags, { readFile: (path) => files[path] ?? null });
    return {
      c,
      db,
      close: async () => {
        await c.stop();
        await db.drop();
      },
    };
  } catch (err) {
    await db.drop();
    throw err;
  }
}

interface Case {
  name: string;
  method: string;
  path: string;
  auth?: string;
  body?: Uint8Array<ArrayBuffer>;
  status: number;
}

async function runCases(base: string, cases: Case[], challenge: RegExp, client?: Deno.HttpClient) {
  for (const k of cases) {
    const headers = new Headers(k.method === "POST" ? WRITE_HEADERS : {});
    if (k.auth !== undefined) headers.set("authorization", k.auth);
    const res = await fetch(`${base}${k.path}`, {
      method: k.method,
      headers,
      body: k.body,
      client,
    });
    const text = await res.text();
    assertEquals(res.status, k.status, `${k.name}: status (body: ${text})`);
    if (k.status === 401) {
      const h = res.headers.get("www-authenticate");
      assert(h !== null, `${k.name}: 401 without WWW-Authenticate`);
      assertMatch(h, challenge, `${k.name}: challenge`);
      assertMatch(text, /^Unauthorized: [^\n]+\n$/, `${k.name}: one-line body`);
    }
  }
}

Deno.test("basic auth protects every endpoint but /healthz", async () => {
  const password = "s3cr3t:with colon €";
  const t = await connectorWith("auth_basic", [
    "--web.auth.username",
    "prom",
    "--web.auth.password-file",
    "/pw",
  ], { "/pw": password + "\n" });
  try {
    const base = t.c.url;
    const ok = basic("prom", password);
    const body = writeRequestBody(nodeExporterSeries(3)) as Uint8Array<ArrayBuffer>;
    const challenge = /^Basic realm="promscale"/;
    await runCases(base, [
      { name: "healthz without credentials", method: "GET", path: "/healthz", status: 200 },
      { name: "metrics without credentials", method: "GET", path: "/metrics", status: 401 },
      { name: "write without credentials", method: "POST", path: "/write", body, status: 401 },
      {
        name: "alias without credentials",
        method: "POST",
        path: "/api/v1/write",
        body,
        status: 401,
      },
      { name: "read without credentials", method: "POST", path: "/read", body, status: 401 },
      { name: "unknown path without credentials", method: "GET", path: "/nope", status: 401 },
      {
        name: "wrong password",
        method: "POST",
        path: "/write",
        body,
        auth: basic("prom", password + "x"),
        status: 401,
      },
      {
        name: "password prefix",
        method: "POST",
        path: "/write",
        body,
        auth: basic("prom", password.slice(0, -1)),
        status: 401,
      },
      {
        name: "wrong user",
        method: "GET",
        path: "/metrics",
        auth: basic("Prom", password),
        status: 401,
      },
      {
        name: "bearer instead of basic",
        method: "GET",
        path: "/metrics",
        auth: "Bearer s3cr3t",
        status: 401,
      },
      {
        name: "not base64",
        method: "GET",
        path: "/metrics",
        auth: "Basic %%%",
        status: 401,
      },
      {
        name: "no colon",
        method: "GET",
        path: "/metrics",
        auth: "Basic " + btoa("prom"),
        status: 401,
      },
      {
        name: "right credentials, metrics",
        method: "GET",
        path: "/metrics",
        auth: ok,
        status: 200,
      },
      {
        name: "right credentials, write",
        method: "POST",
        path: "/write",
        body,
        auth: ok,
        status: 204,
      },
      {
        name: "scheme in lower case",
        method: "POST",
        path: "/write",
        body,
        auth: ok.replace("Basic", "basic"),
        status: 204,
      },
      {
        name: "right credentials, unknown path",
        method: "GET",
        path: "/nope",
        auth: ok,
        status: 404,
      },
    ], challenge);
    // Refused writes stored nothing; the two accepted ones stored their 3 series once.
    const [{ n }] = await t.db.sql<{ n: string }[]>`
      SELECT count(*) AS n FROM prom_metric.node_cpu_seconds_total`;
    assertEquals(Number(n), 3);
  } finally {
    await t.close();
  }
});

Deno.test("bearer token auth protects every endpoint but /healthz", async () => {
  const token = "tok-" + crypto.randomUUID();
  const t = await connectorWith("auth_bearer", ["--web.auth.bearer-token", token]);
  try {
    const body = writeRequestBody(nodeExporterSeries(2)) as Uint8Array<ArrayBuffer>;
    await runCases(t.c.url, [
      { name: "healthz", method: "GET", path: "/healthz", status: 200 },
      { name: "no token", method: "POST", path: "/write", body, status: 401 },
      {
        name: "wrong token",
        method: "POST",
        path: "/write",
        body,
        auth: `Bearer ${token}x`,
        status: 401,
      },
      {
        name: "token as basic",
        method: "GET",
        path: "/metrics",
        auth: basic("x", token),
        status: 401,
      },
      { name: "empty token", method: "GET", path: "/metrics", auth: "Bearer ", status: 401 },
      { name: "metrics", method: "GET", path: "/metrics", auth: `Bearer ${token}`, status: 200 },
      {
        name: "write",
        method: "POST",
        path: "/write",
        body,
        auth: `Bearer ${token}`,
        status: 204,
      },
    ], /^Bearer realm="promscale"/);
    const res = await fetch(`${t.c.url}/metrics`, { headers: { authorization: "Bearer nope" } });
    await res.body?.cancel();
    assertStringIncludes(res.headers.get("www-authenticate") ?? "", 'error="invalid_token"');
  } finally {
    await t.close();
  }
});

Deno.test("authorizer() is off without credentials and checks user and password", () => {
  assertEquals(authorizer({ username: "", password: "", bearerToken: "" }), undefined);
  const a = authorizer({ username: "u", password: "p", bearerToken: "" })!;
  const req = (auth?: string) =>
    new Request("http://x/metrics", { headers: auth ? { authorization: auth } : {} });
  assertEquals(a(req(basic("u", "p"))), null);
  for (const bad of [undefined, basic("u", "P"), basic("U", "p"), basic("u", "p "), "Basic", "x"]) {
    const res = a(req(bad));
    assert(res !== null, `accepted ${bad}`);
    assertEquals(res.status, 401);
  }
  // Invalid UTF-8 inside the base64 is malformed, not a crash.
  const res = a(req("Basic " + btoa("u:\xff\xfe")));
  assertEquals(res?.status, 401);
});

Deno.test("--auth.tls-cert-file and --auth.tls-key-file serve HTTPS", async () => {
  const dir = await Deno.makeTempDir({ prefix: "promscale-tls-" });
  let t: Awaited<ReturnType<typeof connectorWith>> | undefined;
  let client: Deno.HttpClient | undefined;
  try {
    const cert = `${dir}/cert.pem`;
    const key = `${dir}/key.pem`;
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        // webpki refuses a CA certificate as the server's own.
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        key,
        "-out",
        cert,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    const pem = await Deno.readTextFile(cert);
    t = await connectorWith("auth_tls", [
      "--auth.tls-cert-file",
      cert,
      "--auth.tls-key-file",
      key,
      "--web.auth.bearer-token",
      "t0ken",
    ]);
    assert(t.c.url.startsWith("https://"), t.c.url);
    const port = new URL(t.c.url).port;
    const base = `https://localhost:${port}`;
    client = Deno.createHttpClient({ caCerts: [pem] });
    const body = writeRequestBody(nodeExporterSeries(4)) as Uint8Array<ArrayBuffer>;
    await runCases(
      base,
      [
        { name: "healthz over https", method: "GET", path: "/healthz", status: 200 },
        { name: "write without token", method: "POST", path: "/write", body, status: 401 },
        {
          name: "write over https",
          method: "POST",
          path: "/write",
          body,
          auth: "Bearer t0ken",
          status: 204,
        },
      ],
      /^Bearer/,
      client,
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = "";
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      plain = `status ${res.status}`;
      await res.body?.cancel();
    } catch (err) {
      plain = `error ${(err as Error).name}`;
    }
    assert(plain.startsWith("error"), `plain HTTP on the TLS port answered: ${plain}`);
    // A client that does not trust the certificate refuses to talk.
    let untrusted = "";
    try {
      const res = await fetch(`${base}/healthz`);
      untrusted = `status ${res.status}`;
      await res.body?.cancel();
    } catch (err) {
      untrusted = `error ${(err as Error).message}`;
    }
    assert(untrusted.startsWith("error"), `untrusted certificate accepted: ${untrusted}`);
    const [{ n }] = await t.db.sql<{ n: string }[]>`
      SELECT count(*) AS n FROM prom_metric.node_cpu_seconds_total`;
    assertEquals(Number(n), 4);
  } finally {
    client?.close();
    await t?.close();
    await Deno.remove(dir, { recursive: true });
  }
});
