/** Histogram buckets (seconds) shared by the daemons' latency metrics. */

/** 1 ms .. 60 s: RPCs, env operations (create with a cold base can take tens of seconds). */
export const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** 0.1 ms .. 1 s: in-memory work (placement) and etcd round trips. */
export const FAST_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** 0.1 s .. 10 min: a base version reaching a node (attach and hydrate). */
export const PUSH_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
