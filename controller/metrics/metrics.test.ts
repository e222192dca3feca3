import { afterEach, describe, expect, it } from "vitest";
import { addStateSource, type ClusterSnapshot, controllerRegistry } from "./metrics.js";

/** The value of `name{labels}` in a text exposition (0 when absent). */
function sample(text: string, name: string, labels: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

const running = (n: number): ClusterSnapshot => ({
  envs: Array.from({ length: n }, () => ({ node: "n1", phase: "running" })),
  nodes: [{ name: "n1", ready: true, cordoned: false }],
  attachments: [],
});

describe("the cluster gauges", () => {
  let remove: (() => void) | undefined;
  afterEach(() => remove?.());
  /** A replica whose cluster reads are counted; `read` answers each. */
  const source = (read: () => Promise<ClusterSnapshot>) => {
    const counted = { reads: 0 };
    remove = addStateSource({
      replica: "r1",
      isLeader: () => true,
      queues: () => [],
      snapshot: () => {
        counted.reads++;
        return read();
      },
    });
    return counted;
  };

  it("read the cluster once per scrape, and a scrape right after another sees what changed", async () => {
    let envs = 1;
    const c = source(async () => running(envs));
    const first = await controllerRegistry.metrics();
    expect(c.reads).toBe(1); // protoctl_envs, protoctl_nodes and the attachment gauges share it
    expect(sample(first, "protoctl_envs", 'phase="running",node="n1"')).toBe(1);
    expect(sample(first, "protoctl_nodes", 'state="ready",cordoned="false"')).toBe(1);

    envs = 2; // an env created between two scrapes
    const second = await controllerRegistry.metrics();
    expect(c.reads).toBe(2);
    expect(sample(second, "protoctl_envs", 'phase="running",node="n1"')).toBe(2);
  });

  it("share one read between scrapes taken at the same moment", async () => {
    const c = source(async () => {
      await new Promise((r) => setTimeout(r, 20));
      return running(3);
    });
    const [a, b] = await Promise.all([controllerRegistry.metrics(), controllerRegistry.metrics()]);
    expect(c.reads).toBe(1);
    expect(sample(a, "protoctl_envs", 'phase="running",node="n1"')).toBe(3);
    expect(sample(b, "protoctl_envs", 'phase="running",node="n1"')).toBe(3);
  });
});
