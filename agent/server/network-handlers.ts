/** AgentService: lab networks (bridge + VXLAN) on this node, wire ↔ NetworkService. */
import { unaryHandler } from "../../common/grpc.js";
import type { AgentServiceServer } from "../../proto/gen/protoctl/v1/agent.js";
import type { NetworkService } from "../service/network-service.js";

export function networkHandlers(
  networks: NetworkService,
): Pick<AgentServiceServer, "ensureNetwork" | "deleteNetwork"> {
  return {
    ensureNetwork: unaryHandler((req) =>
      networks.ensure({
        bridge: req.name,
        vni: req.vni,
        local: req.localAddress || undefined,
        peers: req.peers,
        gateway: req.gateway || undefined,
        mtu: req.mtu || undefined,
      }),
    ),
    deleteNetwork: unaryHandler(async (req) => {
      await networks.delete(req.name);
      return {};
    }),
  };
}
