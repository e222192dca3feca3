import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { EnvPhase } from "../../proto/gen/protoctl/v1/types.js";
import { labGraph } from "./graph.js";
import { labView } from "./lab-view.js";
import { parseLabSpec } from "./parse-spec.js";
import { planLab } from "./plan.js";

const SPEC = `
name: demo
networks:
  front: 10.0.1.0/24
  back: 10.0.2.0/24
machines:
  lb: { base: deb, networks: [front] }
  web-{1..2}: { base: deb, networks: [front, back] }
  db: { base: deb, networks: [back] }
`;

function lab(placed: boolean) {
  const r = parseLabSpec(SPEC);
  if (!r.ok) throw new Error("bad spec");
  const state = planLab(r.spec, undefined).state;
  // Fixed VNIs keep the snapshots independent of the hash.
  state.networks.front!.vni = 5001;
  state.networks.back!.vni = 5002;
  const status = placed
    ? new Map([
        ["lb", { node: "n1", phase: EnvPhase.ENV_PHASE_RUNNING }],
        ["web-1", { node: "n2", phase: EnvPhase.ENV_PHASE_RUNNING }],
        ["web-2", { node: "n3", phase: EnvPhase.ENV_PHASE_PENDING }],
        ["db", { node: "n1", phase: EnvPhase.ENV_PHASE_LOST }],
      ])
    : undefined;
  return labView({ state, status });
}

const hasDot = ["/usr/bin/dot", "/usr/local/bin/dot"].some((p) => existsSync(p));

describe("labGraph", () => {
  it("draws Graphviz dot", () => {
    expect(labGraph(lab(true), "dot")).toMatchInlineSnapshot(`
      "graph "lab demo" {
        graph [rankdir=LR];
        node [fontname="Helvetica"];
        "net:front" [shape=ellipse, style=filled, fillcolor="#e8f0fe", label="front\\n10.0.1.0/24\\nvni 5001"];
        "net:back" [shape=ellipse, style=filled, fillcolor="#e8f0fe", label="back\\n10.0.2.0/24\\nvni 5002"];
        "machine:lb" [shape=box, label="lb\\nnode: n1\\nrunning\\nfront: 10.0.1.2"];
        "machine:web-1" [shape=box, label="web-1\\nnode: n2\\nrunning\\nfront: 10.0.1.3\\nback: 10.0.2.2"];
        "machine:web-2" [shape=box, label="web-2\\nnode: n3\\npending\\nfront: 10.0.1.4\\nback: 10.0.2.3"];
        "machine:db" [shape=box, label="db\\nnode: n1\\nlost\\nback: 10.0.2.4"];
        "machine:lb" -- "net:front" [label="10.0.1.2"];
        "machine:web-1" -- "net:front" [label="10.0.1.3"];
        "machine:web-1" -- "net:back" [label="10.0.2.2"];
        "machine:web-2" -- "net:front" [label="10.0.1.4"];
        "machine:web-2" -- "net:back" [label="10.0.2.3"];
        "machine:db" -- "net:back" [label="10.0.2.4"];
      }
      "
    `);
  });

  it("draws a Mermaid flowchart", () => {
    expect(labGraph(lab(true), "mermaid")).toMatchInlineSnapshot(`
      "flowchart LR
        net_front{{"front<br/>10.0.1.0/24<br/>vni 5001"}}
        net_back{{"back<br/>10.0.2.0/24<br/>vni 5002"}}
        m_lb["lb<br/>node: n1<br/>running<br/>front: 10.0.1.2"]
        m_web_1["web-1<br/>node: n2<br/>running<br/>front: 10.0.1.3<br/>back: 10.0.2.2"]
        m_web_2["web-2<br/>node: n3<br/>pending<br/>front: 10.0.1.4<br/>back: 10.0.2.3"]
        m_db["db<br/>node: n1<br/>lost<br/>back: 10.0.2.4"]
        m_lb ---|"10.0.1.2"| net_front
        m_web_1 ---|"10.0.1.3"| net_front
        m_web_1 ---|"10.0.2.2"| net_back
        m_web_2 ---|"10.0.1.4"| net_front
        m_web_2 ---|"10.0.2.3"| net_back
        m_db ---|"10.0.2.4"| net_back
      "
    `);
  });

  it("leaves out node and phase while a machine is not placed", () => {
    const text = labGraph(lab(false), "mermaid");
    expect(text).toContain('m_lb["lb<br/>front: 10.0.1.2"]');
    expect(text).not.toContain("node:");
  });

  it("writes Mermaid lines in the flowchart grammar", () => {
    const lines = labGraph(lab(true), "mermaid").trimEnd().split("\n");
    expect(lines[0]).toBe("flowchart LR");
    const node = /^ {2}[a-z][a-z0-9_]*(\["[^"]*"\]|\{\{"[^"]*"\}\})$/;
    const edge = /^ {2}[a-z][a-z0-9_]* ---\|"[^"]*"\| [a-z][a-z0-9_]*$/;
    for (const l of lines.slice(1)) expect(node.test(l) || edge.test(l), l).toBe(true);
    // Every edge refers to declared nodes.
    const declared = new Set(lines.filter((l) => node.test(l)).map((l) => l.trim().split(/[[{]/)[0]));
    for (const l of lines.filter((x) => edge.test(x))) {
      const [a, , b] = l.trim().split(" ");
      expect(declared.has(a!) && declared.has(b!)).toBe(true);
    }
  });

  it.skipIf(!hasDot)("is accepted by Graphviz", () => {
    const out = execFileSync("dot", ["-Tsvg"], { input: labGraph(lab(true), "dot") }).toString();
    expect(out).toContain("<svg");
  });

  it("refuses unknown formats", () => {
    expect(() => labGraph(lab(true), "png")).toThrow(/unknown graph format/);
  });
});
