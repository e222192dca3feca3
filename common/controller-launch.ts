/** How `protoctl controller` is launched: shared by `protoctl up` (cli/up), its systemd unit and the benches. */
import { launchedWith } from "./launch-flags.js";

/**
 * Node/V8 heap flags to launch `protoctl controller` with. Node reads them at
 * start only: they must be on node's command line or in NODE_OPTIONS (the
 * controller used to set --max-semi-space-size=32 at run time, which leaves
 * V8's young generation at its default 2 × 16 MiB: checked with
 * v8.getHeapSpaceStatistics()).
 *
 * The controller allocates many short-lived objects per placement (HTTP/2
 * frames, protobuf and JSON, watch events) while thousands of calls and
 * etcd transactions are in flight, so each scavenge copies a lot of live
 * young objects: a larger young generation scavenges less often. bench
 * schedule (10,000 envs, 100 agents, mTLS), the controller's scavenges:
 * node's defaults 112 taking 935 ms in all; this flag 68 taking 667 ms;
 * --max-semi-space-size=64 43 taking 563 ms for ~60 MB more RSS than this.
 */
export const CONTROLLER_NODE_FLAGS = ["--max-semi-space-size=32"];

/** True when node was started with the controller's heap flags (argv or NODE_OPTIONS). */
export function launchedWithControllerFlags(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions = process.env.NODE_OPTIONS ?? "",
): boolean {
  return launchedWith(CONTROLLER_NODE_FLAGS, execArgv, nodeOptions);
}
