import { describe, expect, it } from "vitest";
import { envSpecFromFlags } from "../../../cli/commands/env.js";
import { EnvSpec, NetworkMode } from "../../../proto/gen/protoctl/v1/types.js";
import { machineNetwork } from "../../service/env-spec-check.js";
import { natRules } from "./nat.js";

describe("NAT for private envs", () => {
  it("one MASQUERADE and two FORWARD rules, each tagged with the env", () => {
    const r = natRules({ node: "n1", env: "web", hostIf: "vp-web", address: "10.213.0.2" });
    expect(r.map((x) => `${x.table}/${x.chain}`)).toEqual([
      "nat/POSTROUTING",
      "filter/FORWARD",
      "filter/FORWARD",
    ]);
    for (const x of r) expect(x.rule.join(" ")).toContain("--comment protoctl:n1/web");
    expect(r[0]!.rule.join(" ")).toBe(
      "-s 10.213.0.2/32 ! -o vp-web -m comment --comment protoctl:n1/web -j MASQUERADE",
    );
  });

  it("is opt-in and only for a private network: the CLI and the agent both refuse it elsewhere", () => {
    const flags = { base: "b", layer: [], selector: [], port: [], env: [], start: true, wait: true };
    expect(envSpecFromFlags("e", { ...flags, network: "private", nat: true }).network?.nat).toBe(true);
    expect(envSpecFromFlags("e", { ...flags, network: "private" }).network?.nat).toBe(false);
    expect(() => envSpecFromFlags("e", { ...flags, network: "host", nat: true })).toThrow(
      /--nat needs --network private/,
    );
    const spec = (network: object) =>
      EnvSpec.fromPartial({ name: "e", base: { name: "b", version: 0 }, network });
    expect(machineNetwork(spec({ mode: NetworkMode.NETWORK_MODE_PRIVATE, nat: true })).nat).toBe(true);
    expect(machineNetwork(spec({ mode: NetworkMode.NETWORK_MODE_PRIVATE })).nat).toBeUndefined();
    expect(() => machineNetwork(spec({ mode: NetworkMode.NETWORK_MODE_NONE, nat: true }))).toThrow(
      /NAT needs a private/,
    );
  });
});
