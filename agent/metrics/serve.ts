/** Starts an agent's metrics endpoint (metrics.listen) and registers the agent as a state source. */
import { failedPrecondition } from "../../common/errors.js";
import { startMetricsServer } from "../../common/metrics/http-server.js";
import type { TlsMaterial } from "../../common/tls.js";
import type { AgentContext } from "../server/context.js";
import { addAgentSource, agentRegistry } from "./metrics.js";
import { agentSource } from "./source.js";

export interface AgentMetricsEndpoint {
  url: string;
  /** Counts hydration progress now (called when an attachment changes). */
  observe(): void;
  close(): Promise<void>;
}

export async function startAgentMetrics(
  ctx: AgentContext,
  cfg: { listen: string; tls: boolean },
  tls: TlsMaterial | undefined,
): Promise<AgentMetricsEndpoint> {
  const source = agentSource(ctx);
  const remove = addAgentSource(source);
  if (!cfg.listen) return { url: "", observe: source.observeHydration, close: async () => void remove() };
  try {
    if (cfg.tls && !(tls?.certPem && tls.keyPem)) {
      throw failedPrecondition("metrics.tls needs the agent's cluster certificate (it runs --insecure)", {
        reason: "CONFIG_INVALID",
      });
    }
    const server = await startMetricsServer({
      listen: cfg.listen,
      registry: agentRegistry,
      tls:
        cfg.tls && tls?.certPem && tls.keyPem
          ? { caPem: tls.caPem, certPem: tls.certPem, keyPem: tls.keyPem }
          : undefined,
    });
    return {
      url: server.url,
      observe: source.observeHydration,
      close: async () => {
        remove();
        await server.close();
      },
    };
  } catch (err) {
    remove();
    throw err;
  }
}
