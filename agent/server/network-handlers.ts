/** AgentService: lab networks (bridge + VXLAN) on this node. */
import { unaryHandler } from "../../common/grpc.js";
import type { AgentServiceServer } from "../../proto/gen/protoctl/v1/agent.js";
import type { AgentContext } from "./context.js";

export function networkHandlers(
  ctx: AgentContext,
): Pick<AgentServiceServer, "ensureNetwork" | "deleteNetwork"> {
  return {
    ensureNetwork: unaryHandler((req) =>
      ctx.networks.ensureNetwork({
        bridge: req.name,
        vni: req.vni,
        local: req.localAddress || undefined,
        peers: req.peers,
        gateway: req.gateway || undefined,
        mtu: req.mtu || undefined,
      }),
    ),
    deleteNetwork: unaryHandler(async (req) => {
      await ctx.networks.deleteNetwork(req.name);
      return {};
    }),
  };
}
