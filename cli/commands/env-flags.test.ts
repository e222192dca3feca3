import { describe, expect, it } from "vitest";
import { NetworkMode } from "../../proto/gen/protoctl/v1/types.js";
import { createFlags } from "../../test/support/cli/create-flags.js";
import { envSpecFromFlags } from "./env.js";

const flags = (o: { network?: string; port?: string[]; nat?: boolean }) =>
  envSpecFromFlags("web", createFlags({ base: "bb", ...o }));

describe("env create's network flags", () => {
  it("take ports on a private or bridge network", () => {
    const p = flags({ network: "private", port: ["8080:80"] }).network;
    expect(p?.mode).toBe(NetworkMode.NETWORK_MODE_PRIVATE);
    expect(p?.ports).toEqual([{ protocol: "tcp", hostPort: 8080, containerPort: 80 }]);
    expect(flags({ network: "bridge:br-lab0", port: ["8443:443/udp"] }).network?.ports).toHaveLength(1);
  });

  it("refuse before any call what the agent would refuse after the env is recorded", () => {
    expect(() => flags({ port: ["8080:80"] })).toThrow("--port needs --network private or bridge:NAME");
    expect(() => flags({ network: "host", port: ["8080:80"] })).toThrow(/--port needs/);
    expect(() => flags({ network: "bridge:a-very-long-bridge-name" })).toThrow(/at most 15 characters/);
    expect(() => flags({ network: "host", nat: true })).toThrow("--nat needs --network private");
  });
});
