/**
 * The HTTP/2 session a grpc-js server call came over: grpc-js's base call keeps its stream
 * (`stream.session`), and each interceptor's call wraps the previous one as `nextCall`.
 * Undefined when not found (another grpc-js layout, a test double): the caller then reads the
 * certificate the documented way, uncached.
 */
export function sessionOf(call: unknown): object | undefined {
  let c = call as { stream?: { session?: unknown }; nextCall?: unknown } | undefined;
  for (let depth = 0; depth < 8 && c && typeof c === "object"; depth++) {
    const session = c.stream?.session;
    if (session && typeof session === "object") return session;
    c = c.nextCall as typeof c;
  }
  return undefined;
}
