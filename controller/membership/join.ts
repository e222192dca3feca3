/**
 * JoinNode: a valid token admits a node under a name, records it, and (with
 * TLS on) signs the agent's CSR with the subject the controller decides:
 * CN = node name, OU = node. A node that joins again (agent restart, new
 * address) keeps its cordon/drain state.
 */
import { invalidArgument } from "../../common/errors.js";
import { validateName } from "../../common/names.js";
import { signCsr } from "../../common/tls.js";
import type { JoinNodeRequest, JoinNodeResponse } from "../../proto/gen/protoctl/v1/control.js";
import { NodeState } from "../../proto/gen/protoctl/v1/types.js";
import type { ControllerContext } from "../context.js";
import { checkJoinToken } from "./tokens.js";

export async function joinNode(ctx: ControllerContext, req: JoinNodeRequest): Promise<JoinNodeResponse> {
  const name = validateName("node", req.name);
  const address = checkAddress(req.address);
  const token = await checkJoinToken(ctx.store, req.token, ctx.tls?.caFingerprint);
  let certPem = "";
  if (ctx.tls) {
    if (!req.csrPem) {
      throw invalidArgument("this cluster uses TLS: the join request needs a CSR", {
        reason: "CSR_REQUIRED",
      });
    }
    const host = address.slice(0, address.lastIndexOf(":")).replace(/^\[|\]$/g, "");
    certPem = await signCsr(ctx.tls.ca, req.csrPem, { cn: name, role: "node", sans: [host, name] });
  }
  const now = Date.now();
  let joinedBefore = false;
  await ctx.store.nodes.update(name, (cur) => {
    joinedBefore = cur !== undefined;
    return {
      name,
      address,
      state: NodeState.NODE_STATE_UNSPECIFIED,
      cordoned: cur?.cordoned ?? false,
      draining: cur?.draining ?? false,
      labels: { ...token.labels, ...req.labels },
      capacity: undefined,
      baseVersions: [],
      foreignBaseVersions: [],
      capabilities: [],
      joinedMs: cur?.joinedMs || now,
      lastSeenMs: now,
      agentVersion: cur?.agentVersion ?? "",
    };
  });
  await ctx.store.events.emit({
    kind: joinedBefore ? "node.rejoined" : "node.joined",
    subject: `node/${name}`,
    message: `node ${name} joined at ${address}`,
    node: name,
  });
  ctx.log.info({ node: name, address }, "node joined");
  return { name, certPem, caPem: ctx.tls?.ca.certPem ?? "", etcdPrefix: ctx.store.keys.prefix };
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
