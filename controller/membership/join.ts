/**
 * JoinNode: a valid token admits a node under a name, records it, and (with
 * TLS on) signs the agent's CSR with the subject the controller decides:
 * CN = node name, OU = node. A node that joins again (agent restart, new
 * address) keeps its cordon/drain state.
 *
 * A name belongs to the node that holds it. A join under an existing name is
 * refused (ALREADY_EXISTS) unless it is that node coming back: with TLS, the
 * agent presents the node certificate the controller last issued for the
 * name (it needs no token, and gets a new certificate in the last 30 days
 * of the old one's validity); without TLS, it brings
 * the token that admitted it. An admin frees a name with `node rm`, or hands
 * it to a new machine with a token made by `node token --node NAME
 * --replace`; either puts the old certificate on the revocation list.
 *
 * The node record, the token's spent use and the node's certificate serial
 * are written in one etcd transaction conditioned on the revisions read, so
 * two joins racing for one single-use token or one name cannot both win.
 * Joins sharing a token on one replica take turns (a fleet booting with one
 * multi-use token would otherwise lose most of its transactions to each
 * other and give up); across replicas a lost transaction is retried after a
 * random pause.
 */
import { alreadyExists, Code, invalidArgument, ProtoctlError } from "../../common/errors.js";
import { KeyedLock } from "../../common/keyed-lock.js";
import { validateName } from "../../common/names.js";
import { certSerial, peerIdentity, signCsr } from "../../common/tls.js";
import type { JoinNodeRequest, JoinNodeResponse } from "../../proto/gen/protoctl/v1/control.js";
import { type Node, NodeState } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import type { Condition, Write } from "../store/kv.js";
import { codecs } from "../store/store.js";
import { identityCodecs, revokeWrite } from "../users/records.js";
import { type CheckedToken, checkJoinToken, hasUsesLeft, spendWrite, usedUp } from "./tokens.js";

const NODE_CERT_DAYS = 365;
/** A node re-joining by a certificate that expires within this gets a new one. */
const RENEW_BEFORE_MS = 30 * 86_400_000;

type CallWithAuth = Parameters<typeof peerIdentity>[0];

const ATTEMPTS = 20;
const joinTurns = new KeyedLock();

export async function joinNode(
  ctx: ControllerContext,
  req: JoinNodeRequest,
  call?: CallWithAuth,
): Promise<JoinNodeResponse> {
  const turn = req.token ? `token:${req.token}` : `node:${req.name}`;
  return joinTurns.run(turn, () => joinOnce(ctx, req, call));
}

async function joinOnce(
  ctx: ControllerContext,
  req: JoinNodeRequest,
  call?: CallWithAuth,
): Promise<JoinNodeResponse> {
  const name = validateName("node", req.name);
  const address = checkAddress(req.address);
  if (ctx.tls && !req.csrPem) {
    throw invalidArgument("this cluster uses TLS: the join request needs a CSR", {
      reason: "CSR_REQUIRED",
    });
  }
  const peer = ctx.tls && call ? peerIdentity(call, ctx.tls.ca.certPem) : undefined;
  const s = ctx.store;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    // another replica won the last transaction: a random pause, growing, so that racers spread out
    if (attempt > 0) await new Promise((r) => setTimeout(r, Math.random() * 20 * Math.min(attempt, 10)));
    const [cur, ident, revoked] = await Promise.all([
      s.nodes.get(name),
      s.kv.get(s.keys.nodeIdentity(name), identityCodecs.node),
      peer ? s.kv.get(s.keys.revoked(peer.serial), identityCodecs.revoked) : undefined,
    ]);
    // the node itself, with the certificate issued to it last
    const byCert =
      !!cur &&
      !revoked &&
      peer?.role === "node" &&
      peer.cn === name &&
      (!ident || ident.value.serial === peer.serial);
    let token: CheckedToken | undefined;
    let replacing = false;
    const writes: Write[] = [];
    if (!byCert) {
      token = await checkJoinToken(s, req.token, name, ctx.tls?.caFingerprint);
      const rejoin = !ctx.tls && !!cur && (token.record.admitted ?? []).includes(name);
      replacing = !!cur && !rejoin && !!token.record.replace && token.record.node === name;
      if (cur && !rejoin && !replacing) {
        throw alreadyExists(`node ${name} already exists`, {
          reason: "NODE_NAME_TAKEN",
          subject: `node/${name}`,
          hint: `remove it first (\`protoctl node rm ${name}\`) or make a token with \`protoctl node token --node ${name} --replace\``,
        });
      }
      if (!rejoin) {
        if (!hasUsesLeft(token.record)) throw usedUp(name);
        writes.push(spendWrite(token, name));
      }
    }
    let certPem = "";
    const renewAfter = Date.now() + RENEW_BEFORE_MS;
    if (byCert && ident?.value.certPem && ident.value.expiresMs > renewAfter) {
      // the node keeps the certificate it showed: one serial per node until renewal
      certPem = ident.value.certPem;
    } else if (ctx.tls) {
      const host = address.slice(0, address.lastIndexOf(":")).replace(/^\[|\]$/g, "");
      certPem = await signCsr(ctx.tls.ca, req.csrPem, {
        cn: name,
        role: "node",
        sans: [host, name],
        days: NODE_CERT_DAYS,
      });
      const now = Date.now();
      writes.push({
        op: "put",
        key: s.keys.nodeIdentity(name),
        value: identityCodecs.node.encode({
          serial: certSerial(certPem),
          issuedMs: now,
          expiresMs: now + NODE_CERT_DAYS * 86_400_000,
          certPem,
        }),
      });
      // a replaced machine's certificate must not speak for the name any more
      if (replacing && ident) writes.push(revokeWrite(s, ident.value.serial, `node/${name}`));
    }
    const now = Date.now();
    const keep = replacing ? undefined : cur?.value;
    const rec: Node = {
      name,
      address,
      state: NodeState.NODE_STATE_UNSPECIFIED,
      cordoned: keep?.cordoned ?? false,
      draining: keep?.draining ?? false,
      labels: { ...(token?.record.labels ?? keep?.labels ?? {}), ...req.labels },
      capacity: undefined,
      baseVersions: [],
      foreignBaseVersions: [],
      capabilities: [],
      joinedMs: keep?.joinedMs || now,
      lastSeenMs: now,
      agentVersion: keep?.agentVersion ?? "",
    };
    writes.push({ op: "put", key: s.keys.node(name), value: codecs.node.encode(rec) });
    const conditions: Condition[] = [
      { key: s.keys.node(name), modRevision: cur?.modRevision ?? 0 },
      { key: s.keys.nodeIdentity(name), modRevision: ident?.modRevision ?? 0 },
    ];
    if (token && writes.some((w) => w.key === token.key)) {
      conditions.push({ key: token.key, modRevision: token.modRevision });
    }
    const r = await s.kv.commit({ conditions, writes });
    if (!r.succeeded) continue; // someone joined, spent the token or replaced the node meanwhile: look again
    const kind = replacing ? "node.replaced" : cur ? "node.rejoined" : "node.joined";
    await s.events.emit({
      kind,
      subject: `node/${name}`,
      message: `node ${name} ${kind.split(".")[1]} at ${address}${byCert ? " (by its certificate)" : ""}`,
      node: name,
    });
    ctx.log.info({ node: name, address, kind }, "node joined");
    return { name, certPem, caPem: ctx.tls?.ca.certPem ?? "", etcdPrefix: s.keys.prefix };
  }
  throw new ProtoctlError(Code.ABORTED, `too many concurrent joins of node ${name}`, { reason: "CONFLICT" });
}

/** host:port with a port in range; IPv6 hosts in brackets. */
export function checkAddress(address: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+):([0-9]{1,5})$/.exec(address);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw invalidArgument(`invalid agent address ${JSON.stringify(address)}`, {
      reason: "INVALID_ADDRESS",
      hint: "give host:port, e.g. 10.0.0.5:7444",
    });
  }
  return address;
}
