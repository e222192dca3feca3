/**
 * The loopback ports `protoctl up` listens on, checked before anything
 * starts: each given once (two daemons on one port would leave the second
 * restarting forever) and each free.
 */
import { createServer } from "node:net";
import { failedPrecondition, invalidArgument } from "../../common/errors.js";

export interface UpPorts {
  etcdPort: number;
  etcdPeerPort: number;
  controllerPort: number;
  agentPort: number;
  controllerMetricsPort: number;
  agentMetricsPort: number;
  consolePort: number;
  insecure?: boolean;
}

type PortUse = [what: string, port: number, flag: string];

export function portUses(o: UpPorts): PortUse[] {
  return [
    ["etcd client", o.etcdPort, "--etcd-port"],
    ["etcd peer", o.etcdPeerPort, "--etcd-peer-port"],
    ["controller", o.controllerPort, "--controller-port"],
    ["agent", o.agentPort, "--agent-port"],
    ["controller metrics", o.controllerMetricsPort, "--controller-metrics-port"],
    ["agent metrics", o.agentMetricsPort, "--agent-metrics-port"],
    // an insecure up serves no console
    ...(o.insecure ? [] : [["console", o.consolePort, "--console-port"] as PortUse]),
  ];
}

/** INVALID_ARGUMENT naming both uses when one port is given twice. */
export function assertDistinct(uses: PortUse[]): void {
  const seen = new Map<number, string>();
  for (const [what, port, flag] of uses) {
    const other = seen.get(port);
    if (other) {
      throw invalidArgument(`port ${port} is given for both the ${other} and the ${what}`, {
        reason: "PORT_TWICE",
        hint: `choose another port with ${flag}`,
      });
    }
    seen.set(port, what);
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

export async function checkPorts(o: UpPorts): Promise<void> {
  const uses = portUses(o);
  assertDistinct(uses);
  for (const [what, port, flag] of uses) {
    if (!(await portFree(port))) {
      throw failedPrecondition(`port ${port} (${what}) on 127.0.0.1 is already in use`, {
        reason: "PORT_IN_USE",
        hint: `stop what listens there, or choose another port with ${flag}`,
      });
    }
  }
}
