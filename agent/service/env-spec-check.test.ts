import { describe, expect, it } from "vitest";
import { EnvSpec, NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import { machineNetwork, machineSpec } from "./env-spec-check.js";

const spec = (network: object) =>
  EnvSpec.fromPartial({ name: "e", base: { name: "b", version: 0 }, network });

describe("machineNetwork", () => {
  it("turns several attachments into links, in order", () => {
    const n = machineNetwork(
      spec({
        mode: NetworkMode.NETWORK_MODE_BRIDGE,
        attachments: [
          {
            mode: NetworkMode.NETWORK_MODE_BRIDGE,
            bridge: "lab-a",
            address: "10.0.0.2/24",
            interfaceName: "eth0",
          },
          {
            mode: NetworkMode.NETWORK_MODE_BRIDGE,
            bridge: "lab-b",
            address: "10.1.0.2/24",
            interfaceName: "eth1",
          },
        ],
      }),
    );
    expect(n.mode).toBe("bridge");
    expect(n.address).toBe("10.0.0.2/24");
    expect(n.links?.map((l) => [l.bridge, l.ifname])).toEqual([
      ["lab-a", "eth0"],
      ["lab-b", "eth1"],
    ]);
  });
  it("rejects attachments that cannot work", () => {
    expect(() =>
      machineNetwork(spec({ mode: NetworkMode.NETWORK_MODE_HOST, attachments: [{ bridge: "x" }] as never })),
    ).toThrow(/takes no attachments/);
    expect(() =>
      machineNetwork(
        spec({
          mode: NetworkMode.NETWORK_MODE_BRIDGE,
          attachments: [
            { mode: NetworkMode.NETWORK_MODE_BRIDGE, bridge: "a", interfaceName: "eth0" },
            { mode: NetworkMode.NETWORK_MODE_BRIDGE, bridge: "b", interfaceName: "eth0" },
          ] as never,
        }),
      ),
    ).toThrow(/same interface name/);
  });
});

describe("machineSpec", () => {
  const spec = (over: Partial<EnvSpec>) =>
    EnvSpec.fromPartial({ name: "e", base: { name: "b", version: 1 }, ...over });
  it("runs envs in a user namespace unless privileged is asked, layered envs privileged", () => {
    expect(machineSpec(spec({}), "/r").privileged).toBe(false);
    expect(machineSpec(spec({ privileged: true }), "/r").privileged).toBe(true);
    expect(machineSpec(spec({ layers: ["tools"] }), "/r").privileged).toBe(true);
  });
});
