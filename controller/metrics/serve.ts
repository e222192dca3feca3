/** Starts a replica's metrics endpoint (metrics.listen) and registers it as a state source. */
import { startMetricsServer } from "../../common/metrics/http-server.js";
import type { ControllerContext } from "../context.js";
import type { ReconcileManager } from "../reconcile/manager.js";
import { addStateSource, controllerRegistry } from "./metrics.js";
import { replicaSource } from "./state-source.js";

export interface ControllerMetricsEndpoint {
  url: string;
  close(): Promise<void>;
}

export async function startControllerMetrics(
  ctx: ControllerContext,
  manager: () => ReconcileManager | undefined,
): Promise<ControllerMetricsEndpoint | undefined> {
  const remove = addStateSource(replicaSource(ctx, manager));
  const { listen, tls } = ctx.config.metrics;
  if (!listen) return { url: "", close: async () => void remove() };
  const self = ctx.tls?.self;
  if (tls && !self) {
    remove();
    const { failedPrecondition } = await import("../../common/errors.js");
    throw failedPrecondition("metrics.tls needs the controller's TLS (it runs --insecure)", {
      reason: "CONFIG_INVALID",
    });
  }
  try {
    const server = await startMetricsServer({
      listen,
      registry: controllerRegistry,
      tls: tls && self ? { caPem: self.caPem, certPem: self.certPem, keyPem: self.keyPem } : undefined,
    });
    return {
      url: server.url,
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
