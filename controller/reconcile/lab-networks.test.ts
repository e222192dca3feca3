import { describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../common/errors.js";
import type { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";
import { EnvPhase, EnvSpec, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import type { LabRecord } from "../store/store.js";
import { LabNetworks, NETWORK_RETRY } from "./lab-networks.js";

const BRIDGE = "pl0123456789b";
const rec: LabRecord = {
  state: {
    networks: {
      red: {
        subnet: "10.9.1.0/24",
        vni: 4100,
        bridge: BRIDGE,
        vxlan: "pl0123456789v",
        salt: 0,
        allocations: {},
      },
    },
  } as unknown as LabRecord["state"],
  specYaml: "",
  createdMs: 0,
  updatedMs: 0,
};

const spec = (name: string) =>
  EnvSpec.fromPartial({
    name,
    group: "lt",
    network: {
      mode: NetworkMode.NETWORK_MODE_BRIDGE,
      attachments: [{ mode: NetworkMode.NETWORK_MODE_BRIDGE, bridge: BRIDGE }],
    },
  });

/** n1 prepares lt-r-1; lt-r-2 already runs on n2. `fail(node)` decides each EnsureNetwork's fate. */
function setup(fail: (node: string) => ProtoctlError | undefined) {
  const events: { kind: string; message: string; node?: string }[] = [];
  const calls: string[] = [];
  const specs = new Map([
    ["lt-r-1", spec("lt-r-1")],
    ["lt-r-2", spec("lt-r-2")],
  ]);
  const statuses = [{ key: "lt-r-2", value: { node: "n2", phase: EnvPhase.ENV_PHASE_RUNNING } }];
  const cache = {
    specs: { get: (n: string) => (specs.has(n) ? { value: specs.get(n) } : undefined), names: () => [] },
    status: { list: () => statuses, names: () => [], collection: { nameOf: (k: string) => k } },
    nodes: { get: () => ({ value: { labels: {} } }), names: () => ["n1", "n2"] },
    isReady: () => true,
    nodeAddress: (n: string) => (n === "n1" ? "10.0.0.1:7444" : "10.0.0.2:7444"),
  };
  const store = {
    labStates: { get: async () => ({ value: rec }) },
    events: {
      emit: async (e: { kind: string; message: string; node?: string }) => {
        events.push(e);
        return true;
      },
    },
  };
  const labs = { get: () => ({ value: rec }), names: () => ["lt"], list: () => [{ value: rec }] };
  const client = (node: string) =>
    ({
      ensureNetwork: (_req: unknown, _md: unknown, _o: unknown, cb: (e: unknown, r?: unknown) => void) => {
        calls.push(node);
        const err = fail(node);
        setImmediate(() => (err ? cb(err) : cb(null, { bridge: BRIDGE, vxlan: "" })));
        return { cancel() {} };
      },
    }) as unknown as AgentServiceClient;
  const ln = new LabNetworks(store as never, cache as never, labs as never, client, () => []);
  return { ln, events, calls };
}

const caught = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => ProtoctlError.from(e),
  );

describe("LabNetworks.prepare", () => {
  it("fails the env at once with the agent's reason when its own node refuses terminally", async () => {
    const { ln, events } = setup((n) =>
      n === "n1"
        ? new ProtoctlError(Code.RESOURCE_EXHAUSTED, "no room for a bridge", { reason: "TOO_MANY_LINKS" })
        : undefined,
    );
    const err = await caught(ln.prepare("n1", spec("lt-r-1")));
    expect(err?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err?.reason).toBe("TOO_MANY_LINKS");
    expect(err?.message).toBe("network red on n1: no room for a bridge");
    expect(events).toEqual([
      expect.objectContaining({
        kind: "lab.network_failed",
        node: "n1",
        message: expect.stringContaining("no room"),
      }),
    ]);
    expect(ln.stats).toMatchObject({ ensure: 1, ensureFailed: 1 }); // the peer n2 got its update
  });

  it("retries a command failure with backoff, then fails the env (NETWORK_FAILED), one event", async () => {
    const { ln, events } = setup((n) =>
      n === "n1" ? new ProtoctlError(Code.INTERNAL, "ip link add: File exists") : undefined,
    );
    for (let i = 1; i < NETWORK_RETRY.tries; i++) {
      const err = await caught(ln.prepare("n1", spec("lt-r-1")));
      expect(err?.code, `try ${i}`).toBe(Code.INTERNAL); // not terminal: the env loop retries
    }
    const err = await caught(ln.prepare("n1", spec("lt-r-1")));
    expect(err?.code).toBe(Code.FAILED_PRECONDITION);
    expect(err?.reason).toBe("NETWORK_FAILED");
    expect(err?.message).toContain("ip link add: File exists");
    expect(events).toHaveLength(1);
  });

  it("does not fail an env at once for a peer's terminal error, and forgets a streak on success", async () => {
    let broken = true;
    const { ln, calls } = setup((n) =>
      n === "n2" && broken ? new ProtoctlError(Code.INVALID_ARGUMENT, "bad peer") : undefined,
    );
    const err = await caught(ln.prepare("n1", spec("lt-r-1")));
    expect(err?.code).toBe(Code.UNAVAILABLE);
    expect(err?.message).toBe("network red on n2: bad peer");
    broken = false;
    expect(await caught(ln.prepare("n1", spec("lt-r-1")))).toBeUndefined();
    // n1 was applied on the first pass: only n2 is called again
    expect(calls.sort()).toEqual(["n1", "n2", "n2"]);
    expect(await caught(ln.prepare("n1", spec("lt-r-1")))).toBeUndefined();
    expect(calls).toHaveLength(3);
  });

  it("retries an unreachable agent for the whole time budget", async () => {
    const { ln } = setup((n) =>
      n === "n1" ? new ProtoctlError(Code.UNAVAILABLE, "connect refused") : undefined,
    );
    for (let i = 0; i < NETWORK_RETRY.tries + 2; i++) {
      expect((await caught(ln.prepare("n1", spec("lt-r-1"))))?.code).toBe(Code.UNAVAILABLE);
    }
  });
});
