/**
 * The ControlService's one gate: resolves the caller from its certificate
 * (common/tls.ts verifies the chain, the IdentityDirectory the serial and
 * the user's role), checks the method against the table in authz.ts, and
 * records every mutating call (allowed or refused) as an `audit.*` event
 * with the caller, the method, the object it named and the outcome.
 *
 * With TLS off (`--insecure`) nobody is identified: every call is allowed
 * and audited as "anonymous (insecure)".
 */
import {
  Metadata,
  ResponderBuilder,
  ServerInterceptingCall,
  type ServerInterceptor,
  ServerListenerBuilder,
  status,
} from "@grpc/grpc-js";
import { Code, ERROR_DETAIL_KEY } from "../../common/errors.js";
import { peerIdentity } from "../../common/tls.js";
import { ErrorDetail } from "../../proto/gen/protoctl/v1/types.js";
import type { ClusterStore } from "../store/store.js";
import { ANONYMOUS, type IdentityDirectory, type Principal } from "../users/directory.js";
import { allowed, methodName, ruleOf } from "./authz.js";

export interface AuthOptions {
  /** The cluster CA; undefined when TLS is off. */
  caPem?: string;
  directory: IdentityDirectory;
  store: ClusterStore;
}

export function controlInterceptor(opts: AuthOptions): ServerInterceptor {
  return (descriptor, call) => {
    const rule = ruleOf(descriptor.path);
    const method = methodName(descriptor.path);
    let who: Principal = ANONYMOUS;
    let object = "";
    let audited = false;
    const audit = (code: number, detail: string) => {
      if (audited || !rule?.mutates || (rule.level === "node" && code === status.OK)) return;
      audited = true;
      void opts.store.events.emit(auditEvent(who, method, object, code, detail, !opts.caPem));
    };
    const refuse = (code: number, reason: string, message: string) => {
      audit(code, message);
      const metadata = new Metadata();
      metadata.set(
        ERROR_DETAIL_KEY,
        Buffer.from(
          ErrorDetail.encode({
            reason,
            hint:
              code === status.UNAUTHENTICATED
                ? "use a credential issued by this cluster (`protoctl user add`, or admin.json from `protoctl up`)"
                : "ask an admin for a role that allows this (`protoctl user add NAME --role ...`)",
            subject: descriptor.path,
            metadata: {},
            output: "",
          }).finish(),
        ),
      );
      call.sendStatus({ code, details: message, metadata });
    };
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((md, next) => {
        if (!opts.caPem) {
          if (rule) next(md);
          else refuse(status.UNIMPLEMENTED, "UNKNOWN_METHOD", `${descriptor.path} is not served`);
          return;
        }
        const peer = peerIdentity(call, opts.caPem);
        const resolved = peer ? opts.directory.resolve(peer) : Promise.resolve(ANONYMOUS);
        resolved.then(
          (p) => {
            // an open method (JoinNode) does not need the certificate: a stale one is ignored, not fatal
            if ("refused" in p && rule?.level === "open") {
              next(md);
              return;
            }
            if ("refused" in p) {
              who = { kind: peer?.role === "node" ? "node" : "user", name: peer?.cn ?? "", role: "none" };
              refuse(status.UNAUTHENTICATED, p.reason, p.message);
              return;
            }
            who = p;
            if (allowed(rule, p)) {
              next(md);
              return;
            }
            if (p.kind === "anonymous") {
              refuse(
                status.UNAUTHENTICATED,
                "NO_CREDENTIALS",
                "a client certificate issued by the cluster CA is required",
              );
            } else {
              refuse(
                status.PERMISSION_DENIED,
                "FORBIDDEN",
                `${describe(p)} may not call ${method}${rule ? ` (needs ${rule.level})` : ""}`,
              );
            }
          },
          (err: Error) =>
            refuse(status.UNAVAILABLE, "IDENTITY_UNAVAILABLE", `cannot check the caller: ${err.message}`),
        );
      })
      .withOnReceiveMessage((msg, next) => {
        if (!object) object = objectOf(method, msg);
        next(msg);
      })
      .build();
    const responder = new ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((st, next) => {
        audit(st.code, st.details);
        next(st);
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}

/** "user alice (operator)", "node n1", "controller c1", "anonymous". */
export function describe(p: Principal): string {
  if (p.kind === "user") return `user ${p.name} (${p.role})`;
  if (p.kind === "anonymous") return "anonymous";
  return `${p.kind} ${p.name}`;
}

/** What the call is about, from its first message: "env/web-1", "user/bob"; "" when nothing names it. */
export function objectOf(method: string, msg: unknown): string {
  const kind = /Env|Exec/.test(method)
    ? "env"
    : /Lab/.test(method)
      ? "lab"
      : /Base/.test(method)
        ? "base"
        : /Layer/.test(method)
          ? "layer"
          : /User/.test(method)
            ? "user"
            : /Node|Token/.test(method)
              ? "node"
              : "";
  const name = findName(msg, 3);
  return kind && name ? `${kind}/${name.slice(0, 80)}` : "";
}

/** The first `name` / `env` / `node` string in a message or its nested messages (oneofs included). */
function findName(o: unknown, depth: number): string {
  if (!o || typeof o !== "object" || Buffer.isBuffer(o) || depth < 0) return "";
  const m = o as Record<string, unknown>;
  for (const k of ["name", "env", "node"]) if (typeof m[k] === "string" && m[k]) return m[k] as string;
  for (const v of Object.values(m)) {
    const n = findName(v, depth - 1);
    if (n) return n;
  }
  return "";
}

export function auditEvent(
  who: Principal,
  method: string,
  object: string,
  code: number,
  detail: string,
  insecure: boolean,
) {
  const outcome =
    code === status.OK
      ? "ok"
      : code === status.PERMISSION_DENIED || code === status.UNAUTHENTICATED
        ? "denied"
        : "failed";
  const caller = insecure ? "anonymous (insecure)" : describe(who);
  const codeName = Code[code] ?? String(code);
  return {
    kind: `audit.${outcome}`,
    subject: object || `method/${method}`,
    message: `${caller} ${method}${object ? ` ${object}` : ""}: ${codeName}${code === status.OK ? "" : ` ${detail.slice(0, 200)}`}`,
    node: who.kind === "node" ? who.name : "",
    attributes: {
      caller: insecure ? "" : who.name,
      callerKind: insecure ? "anonymous" : who.kind,
      role: insecure ? "" : who.role,
      method,
      object,
      outcome,
      code: codeName,
    },
  };
}
