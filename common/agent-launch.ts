/** How `protoctl agent` is launched: shared by the agent, `protoctl up` (cli/up) and the bench. */

/**
 * Node/V8 flags to launch `protoctl agent` with (node reads them at start
 * only: put them on node's command line or in NODE_OPTIONS; set at run time
 * they do not resize the heap). The agent is a long-lived daemon with a
 * ~15-20 MB live heap and bursts of short-lived garbage (gRPC, protobuf): a
 * small young generation and a tighter old-generation limit keep V8 from
 * growing its heap far past what is live. Measured with bench/env-create,
 * 100 running envs: ~117 MB RSS with node's defaults, ~75-79 MB with these
 * (and AGENT_ENV); create-to-first-exec unchanged within noise. The live heap
 * stays far below the old-space limit (thousands of envs fit).
 */
export const AGENT_NODE_FLAGS = ["--max-semi-space-size=1", "--max-old-space-size=128"];

/** glibc: fewer malloc arenas for the agent's few threads (set in the agent's environment at launch). */
export const AGENT_ENV = { MALLOC_ARENA_MAX: "2" };
