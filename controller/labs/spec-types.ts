/**
 * The typed, validated and expanded form of a lab spec file. Everything here
 * is plain JSON (no Maps, no Buffers) so that a spec can be digested,
 * stored in etcd and compared across controller restarts. Produced by
 * `parseLabSpec` (parse-spec.ts); consumed by the planner (plan.ts).
 */

export interface LabSpec {
  /** Lab name (validated like every object name). */
  name: string;
  /** Free text, not used by the planner. */
  description: string;
  /** Networks in file order. */
  networks: LabNetworkSpec[];
  /** Machines after expansion (`count`, `web-{1..3}`), in file order. */
  machines: LabMachineSpec[];
  /** `ttl:` in the file: the lab is deleted this long after it is applied. */
  ttlSeconds?: number;
}

export interface LabNetworkSpec {
  name: string;
  /** Canonical CIDR, host bits zero, e.g. "10.10.1.0/24". */
  subnet: string;
}

export interface LabMachineSpec {
  /** Expanded machine name, e.g. "web-2". */
  name: string;
  /** Name of the env that runs it: `<lab>-<machine>`. */
  envName: string;
  /** The name as written in the file before expansion, e.g. "web" or "web-{1..3}". */
  template: string;
  /** 1-based position within its template's expansion; 0 when the machine was not expanded. */
  index: number;
  base: { name: string; version: number };
  layers: string[];
  boot: boolean;
  /** No user namespace (explicit opt-in; common/privilege.ts). */
  privileged: boolean;
  resources: LabResources;
  /** Pin to this node ("" = let the scheduler choose). */
  node: string;
  nodeSelector: Record<string, string>;
  /** Environment variables. */
  env: Record<string, string>;
  files: LabFileSpec[];
  startup: string[];
  /** Networks joined, in the order written; `address` is set when fixed in the file. */
  networks: LabMachineNetwork[];
  ports: LabPortSpec[];
}

export interface LabResources {
  /** 0 = unlimited. */
  memoryBytes: number;
  cpus: number;
  pids: number;
  diskBytes: number;
}

export interface LabFileSpec {
  /** Absolute, normalized path inside the machine. */
  path: string;
  /** File mode bits, e.g. 0o644. */
  mode: number;
  /** Content, base64; absent while the file still refers to a `source` on the client's disk. */
  contentBase64?: string;
  /** Path relative to the spec file, as written; see cli/labs/inline-files.ts. */
  source?: string;
}

export interface LabMachineNetwork {
  network: string;
  /** Fixed dotted-quad address, when the spec gives one. */
  address?: string;
}

export interface LabPortSpec {
  protocol: "tcp" | "udp";
  /** Already offset for counted machines (web-2 gets host port + 1). */
  hostPort: number;
  containerPort: number;
}

/** One problem in a spec file, with the position of the YAML node it is about. */
export interface LabSpecIssue {
  /** 1-based line and column; 0 when the problem has no position (empty file). */
  line: number;
  col: number;
  /** Dotted path to the value, e.g. "machines.web.networks.backend". */
  path: string;
  message: string;
}
