/**
 * Test helpers: controllers in-process on one etcd under a unique prefix,
 * fake agents joined to them, a typed client, and polling.
 */
import { randomBytes } from "node:crypto";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { callUnary } from "../../common/grpc.js";
import { createLogger, silentLogger } from "../../common/logger.js";
import { clientCredentials } from "../../common/tls.js";
import { ControlServiceClient } from "../../proto/gen/protoctl/v1/control.js";
import type { EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { type FakeAgent, type FakeAgentOptions, startFakeAgent } from "../../test/harness/fake-agent.js";
import { type ControllerConfig, controllerConfig, type DeepPartial } from "../config.js";
import { type RunningController, startController } from "../controller.js";

export function uniquePrefix(): string {
  return `/protoctl-test-${randomBytes(4).toString("hex")}/v1/`;
}

export function testConfig(
  etcd: string,
  prefix: string,
  over: DeepPartial<ControllerConfig> = {},
): ControllerConfig {
  return controllerConfig({
    listen: "127.0.0.1:0",
    insecure: true,
    etcd: { endpoints: [etcd], prefix },
    membership: { leaseTtlSeconds: 2, heartbeatIntervalMs: 500 },
    reconcile: { lostGraceSeconds: 2, electionTtlSeconds: 2, backoffBaseMs: 50, backoffMaxMs: 2000 },
    ...over,
  });
}

export async function startTestController(
  etcd: string,
  prefix: string,
  over: DeepPartial<ControllerConfig> = {},
): Promise<RunningController> {
  const log = process.env.PROTOCTL_TEST_LOG
    ? createLogger({ name: "controller", level: process.env.PROTOCTL_TEST_LOG, format: "json" })
    : silentLogger();
  return startController(testConfig(etcd, prefix, over), log);
}

export function client(
  address: string,
  creds: ChannelCredentials = clientCredentials(undefined),
): ControlServiceClient {
  return new ControlServiceClient(address, creds);
}

/** Promise form of a unary ControlService method: `await call(c, "getEnv", { name })`. */
export function call<K extends keyof ControlServiceClient>(
  c: ControlServiceClient,
  method: K,
  req: ControlServiceClient[K] extends (req: infer R, ...rest: never[]) => unknown ? R : never,
  deadlineMs = 30_000,
): Promise<
  ControlServiceClient[K] extends (
    req: never,
    md: never,
    opts: never,
    cb: (e: never, res: infer S) => void,
  ) => unknown
    ? S
    : never
> {
  const fn = (c[method] as (...a: unknown[]) => unknown).bind(c);
  return callUnary(fn as never, req as never, { deadlineMs }) as never;
}

export async function joinAgents(
  controllers: string | string[],
  token: string,
  specs: FakeAgentOptions[],
): Promise<FakeAgent[]> {
  const agents: FakeAgent[] = [];
  for (const s of specs) {
    const a = await startFakeAgent(s);
    await a.join(controllers, token);
    agents.push(a);
  }
  return agents;
}

export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `condition not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** An env spec for tests: debian, latest version, started, placed anywhere, nothing else set; `over` replaces fields. */
export function testEnvSpec(name: string, over: Partial<EnvSpec> = {}): EnvSpec {
  return {
    name,
    base: { name: "debian", version: 0 },
    layers: [],
    boot: false,
    resources: undefined,
    network: undefined,
    env: {},
    files: [],
    startup: [],
    node: "",
    nodeSelector: {},
    group: "",
    restart: 0,
    start: true,
    hostname: "",
    ...over,
  };
}
