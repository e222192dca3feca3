/** The JSON the controller sends (view-model.ts) and the browser reads (ui/): one shape for both. */
export interface ConsoleNode {
  name: string;
  state: string;
  cordoned: boolean;
  draining: boolean;
  address: string;
  poolSizeBytes: number;
  poolFreeBytes: number;
  envs: number;
  bases: string[];
  attached: number;
  hydrating: number;
  lastSeenMs: number;
}

export interface ConsoleEnv {
  name: string;
  phase: string;
  node: string;
  base: string;
  layers: string[];
  group: string;
  message: string;
  createdMs: number;
  addresses: string[];
}

export interface ConsolePush {
  base: string;
  version: number;
  nodes: Array<{ node: string; phase: string; percent: number; source: string; message: string }>;
}

export interface ConsoleLab {
  name: string;
  phase: string;
  networks: Array<{ name: string; subnet: string; nodes: string[] }>;
  machines: Array<{
    name: string;
    env: string;
    node: string;
    phase: string;
    addresses: Record<string, string>;
  }>;
}

export interface ConsoleState {
  cluster: string;
  controller: string;
  leader: string;
  timeMs: number;
  nodes: ConsoleNode[];
  envs: ConsoleEnv[];
  pushes: ConsolePush[];
  labs: ConsoleLab[];
}

export interface ClusterEvent {
  timeMs: number;
  kind: string;
  subject: string;
  message: string;
  node: string;
}
