/**
 * HTTP authentication: basic (`--web.auth.username` / `--web.auth.password`)
 * or bearer (`--web.auth.bearer-token`), required on every endpoint but
 * `/healthz` (the router decides where it applies).
 *
 * Credentials are compared in constant time: both sides go through
 * HMAC-SHA-256 under a key drawn at start, and the fixed-length digests are
 * compared with `timingSafeEqual`. Comparing digests rather than the strings
 * themselves also hides the secret's length, and the per-process key means
 * the digests are useless outside this process.
 *
 * Refusals are 401 with a `WWW-Authenticate` challenge (RFC 7235 §4.1) and a
 * one-line reason that never repeats what the client sent.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { HttpError, toResponse } from "./errors.ts";

/** The configured credentials; empty strings mean "not set". */
export interface AuthOptions {
  username: string;
  password: string;
  bearerToken: string;
}

/** Returns a response when the request is refused, null when it may proceed. */
export type Authorizer = (req: Request) => Response | null;

const REALM = "promscale";

/**
 * Builds the authorizer for the configured credentials, or undefined when
 * no authentication is configured. Basic and bearer auth are exclusive
 * (config.ts refuses both at once); basic wins if both are somehow set.
 */
export function authorizer(o: AuthOptions): Authorizer | undefined {
  const key = randomBytes(32);
  const digest = (s: string | Uint8Array): Uint8Array =>
    createHmac("sha256", key).update(s).digest();
  const same = (a: Uint8Array, b: Uint8Array): boolean => timingSafeEqual(a, b);

  if (o.username !== "") {
    const wantUser = digest(o.username);
    const wantPassword = digest(o.password);
    const challenge = `Basic realm="${REALM}", charset="UTF-8"`;
    return (req) => {
      const given = credentials(req.headers.get("authorization"), "basic");
      if (given === null) return refuse("missing basic auth credentials", challenge);
      const pair = basicPair(given);
      if (pair === null) return refuse("malformed basic auth credentials", challenge);
      // Both comparisons always run: `&` rather than `&&`, so the time taken
      // does not tell whether the user name was right.
      const ok = Number(same(digest(pair.user), wantUser)) &
        Number(same(digest(pair.password), wantPassword));
      return ok ? null : refuse("wrong user name or password", challenge);
    };
  }
  if (o.bearerToken !== "") {
    const wantToken = digest(o.bearerToken);
    return (req) => {
      const given = credentials(req.headers.get("authorization"), "bearer");
      if (given === null) {
        return refuse("missing bearer token", `Bearer realm="${REALM}"`);
      }
      return same(digest(given), wantToken)
        ? null
        : refuse("wrong bearer token", `Bearer realm="${REALM}", error="invalid_token"`);
    };
  }
  return undefined;
}

/** The credentials after `<scheme> ` in an Authorization header, or null. */
function credentials(header: string | null, scheme: string): string | null {
  if (header === null) return null;
  const h = header.trim();
  const space = h.indexOf(" ");
  if (space < 0 || h.slice(0, space).toLowerCase() !== scheme) return null;
  const rest = h.slice(space + 1).trim();
  return rest === "" ? null : rest;
}

/** Decodes `base64(user ":" password)` (RFC 7617), UTF-8; null when malformed. */
function basicPair(b64: string): { user: string; password: string } | null {
  let bytes: Uint8Array;
  try {
    const bin = atob(b64);
    bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  } catch {
    return null;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  const colon = text.indexOf(":");
  if (colon < 0) return null;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

function refuse(reason: string, challenge: string): Response {
  return toResponse(new HttpError(401, `Unauthorized: ${reason}`), {
    "www-authenticate": challenge,
  });
}
