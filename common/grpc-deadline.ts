/**
 * A deadline on every unary call a grpc-js client of ours makes: a client
 * interceptor fills one in when the call site gave none, so a peer that
 * stops answering cannot hang a reconcile loop or an API handler. Streams
 * (exec sessions, log follows, long operations) keep no deadline: they end
 * with their work, and keepalive pings find a dead peer.
 */
import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";

export function defaultUnaryDeadline(ms: number): Interceptor {
  return (options, nextCall) => {
    const def = options.method_definition;
    const unary = !def.requestStream && !def.responseStream;
    const next =
      unary && options.deadline === undefined ? { ...options, deadline: new Date(Date.now() + ms) } : options;
    return new InterceptingCall(nextCall(next));
  };
}
