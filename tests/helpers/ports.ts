/**
 * Free TCP ports for tests. The port is free when returned; another process
 * could take it before the caller binds, which on a test machine is rare
 * enough to accept.
 */

/** Returns a TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    return (listener.addr as Deno.NetAddr).port;
  } finally {
    listener.close();
  }
}
