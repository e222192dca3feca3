/**
 * The scheduler's input: an immutable picture of the cluster at one moment.
 * Built by the controller from its informers (see reconcile/cluster-cache.ts)
 * and by tests from plain objects (see harness.ts); the scheduler never reads
 * anything else.
 */

export interface NodeView {
  readonly name: string;
  readonly ready: boolean;
  readonly cordoned: boolean;
  readonly draining: boolean;
  readonly labels: Readonly<Record<string, string>>;
  readonly capacity: {
    /** Total memory of the node; 0 = unknown (memory is then not checked). */
    readonly memoryBytes: number;
    /** Pool size and free space as last reported. */
    readonly poolSizeBytes: number;
    readonly poolFreeBytes: number;
    readonly cpus: number;
  };
  /** What envs already placed here asked for (declared resources, not usage). */
  readonly allocated: {
    readonly memoryBytes: number;
    readonly diskBytes: number;
    readonly envs: number;
  };
  /** Base versions held, as "name@N". */
  readonly baseVersions: ReadonlySet<string>;
  /** Envs per anti-affinity group on this node. */
  readonly groups: ReadonlyMap<string, number>;
}

export interface ClusterView {
  readonly nodes: readonly NodeView[];
  /**
   * Whether a base version held by some ready node may be used on a node that
   * lacks it (it is then propagated before the env is created). Off until
   * propagation lands: placement then requires the version on the node.
   */
  readonly propagation: boolean;
}

export type Strategy = "spread" | "binpack";

export interface ScheduleRequest {
  readonly env: string;
  readonly base: string;
  /** Resolved version (>= 1). */
  readonly version: number;
  readonly memoryBytes: number;
  readonly diskBytes: number;
  readonly nodeSelector?: Readonly<Record<string, string>>;
  /** Pin to this node. */
  readonly node?: string;
  /** Anti-affinity group (a lab). */
  readonly group?: string;
  readonly strategy?: Strategy;
  /** Nodes not to use (e.g. the one the env was lost on). */
  readonly exclude?: readonly string[];
  /** Nodes not to use for now, each with the reason shown (e.g. pushing the base there failed). */
  readonly avoid?: Readonly<Record<string, string>>;
}

export interface Rejection {
  readonly node: string;
  readonly reason: string;
}

export interface NodeScore {
  readonly node: string;
  readonly score: number;
  readonly parts: Readonly<Record<string, number>>;
}

export interface Plan {
  readonly node?: string;
  /** True when the chosen node lacks the version and must receive it first. */
  readonly needsPropagation?: boolean;
  readonly rejections: readonly Rejection[];
  readonly scores: readonly NodeScore[];
}

/** Helper to build a frozen view (tests, cache). */
export function freezeView(nodes: NodeView[], propagation = false): ClusterView {
  return Object.freeze({ nodes: Object.freeze(nodes.map((n) => Object.freeze(n))), propagation });
}
