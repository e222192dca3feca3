/** How `protoctl agent` is launched: shared by the agent, `protoctl up` (cli/up) and the bench. */

/**
 * Node/V8 heap flags to launch `protoctl agent` with (node reads them at start
 * only: put them on node's command line or in NODE_OPTIONS; set at run time
 * they do not resize the heap). The agent is a long-lived daemon with a
 * ~15-20 MB live heap and bursts of short-lived garbage (gRPC, protobuf): a
 * small young generation and a tighter old-generation limit keep V8 from
 * growing its heap far past what is live. Measured with bench/env-create,
 * 100 running envs: ~117 MB RSS with node's defaults, ~75-79 MB with these
 * (and AGENT_ENV); create-to-first-exec unchanged within noise. The live heap
 * stays far below the old-space limit (thousands of envs fit).
 */
export const AGENT_HEAP_FLAGS = ["--max-semi-space-size=1", "--max-old-space-size=128"];

/**
 * The heap flags and --no-opt (no TurboFan), on node's command line: V8 refuses
 * --no-opt in NODE_OPTIONS, and set at run time (agent/main.ts does, for an
 * agent launched through NODE_OPTIONS) it comes after start-up has touched
 * the optimizing compiler. The agent is glue around system calls and tools
 * (data moves in native code: buffers, pipes, BLAKE3), so optimized code buys
 * it little. bench/env-create, the flags without and with --no-opt on the
 * command line, alternating (2 rounds each, 2 cores loaded by other work):
 * RSS with 100 envs 76.5 / 86.6 MB against 73.9 / 70.6 MB (node's code pages
 * 45.9 / 46.0 against 42.6 / 42.3 MB), fresh 65.9 / 65.2 against 61.9 / 61.4
 * MB; create-to-first-exec 1.24 / 1.26 × raw against 1.16 / 1.19, 20
 * concurrent creates 9.2-10.9 against 10.7-12.2 envs/s (no slower).
 */
export const AGENT_NODE_FLAGS = [...AGENT_HEAP_FLAGS, "--no-opt"];

/** glibc: fewer malloc arenas for the agent's few threads (set in the agent's environment at launch). */
export const AGENT_ENV = { MALLOC_ARENA_MAX: "2" };
