import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadAgentConfig } from "../agent/config.js";
import { controllerConfig, loadControllerConfig } from "./config.js";

const deploy = join(import.meta.dirname, "..", "deploy");

describe("controller configuration", () => {
  it("reads the deploy/controller.yaml example", () => {
    const cfg = loadControllerConfig(join(deploy, "controller.yaml"));
    expect(cfg.listen).toBe("10.0.0.11:7443");
    expect(cfg.etcd.endpoints).toHaveLength(3);
    expect(cfg.membership.leaseTtlSeconds).toBe(3);
    expect(cfg.id).toMatch(/-\d+$/);
  });

  it("lets flags win over the file and fills advertise from listen", () => {
    const cfg = loadControllerConfig(join(deploy, "controller.yaml"), {
      listen: "127.0.0.1:9000",
      advertise: undefined,
      "membership.leaseTtlSeconds": "5",
    });
    expect(cfg.listen).toBe("127.0.0.1:9000");
    expect(cfg.membership.leaseTtlSeconds).toBe(5);
    expect(controllerConfig({ listen: "1.2.3.4:1" }).advertise).toBe("1.2.3.4:1");
  });

  it("the deploy/agent.yaml example is valid for the agent", () => {
    const cfg = loadAgentConfig({ file: join(deploy, "agent.yaml"), env: {} });
    expect(cfg.controller).toContain(",");
    expect(cfg.pool.sizeBytes).toBe(32 * 2 ** 30);
  });
});
