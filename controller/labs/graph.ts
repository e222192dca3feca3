/**
 * `lab graph`: a lab as Graphviz dot or a Mermaid flowchart. Machines are
 * boxes (name, node, addresses when known), networks are ellipses/hexagons
 * (name, subnet, VNI), one edge per machine–network membership labelled with
 * the machine's address on it. Membership is read from the machines'
 * address maps, which IPAM fills for every network a machine joins.
 * Output is deterministic (file order) so it can be diffed and snapshotted.
 */
import { invalidArgument } from "../../common/errors.js";
import { EnvPhase, envPhaseToJSON, type Lab } from "../../proto/gen/protoctl/v1/types.js";

export type GraphFormat = "dot" | "mermaid";

export function labGraph(lab: Lab, format: GraphFormat | string): string {
  if (format === "dot") return toDot(lab);
  if (format === "mermaid") return toMermaid(lab);
  throw invalidArgument(`unknown graph format '${format}'`, {
    reason: "INVALID_FORMAT",
    hint: "use dot or mermaid",
  });
}

function machineLines(m: Lab["machines"][number]): string[] {
  const lines = [m.name];
  if (m.node) lines.push(`node: ${m.node}`);
  if (m.phase !== EnvPhase.ENV_PHASE_UNSPECIFIED)
    lines.push(envPhaseToJSON(m.phase).replace("ENV_PHASE_", "").toLowerCase());
  for (const [net, a] of Object.entries(m.addresses)) lines.push(`${net}: ${a}`);
  return lines;
}

function networkLines(n: Lab["networks"][number]): string[] {
  const lines = [n.name, n.subnet];
  if (n.vni) lines.push(`vni ${n.vni}`);
  return lines;
}

// ---------------------------------------------------------------- dot

function dotString(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

function toDot(lab: Lab): string {
  const out: string[] = [];
  out.push(`graph ${dotString(`lab ${lab.name}`)} {`);
  out.push("  graph [rankdir=LR];");
  out.push('  node [fontname="Helvetica"];');
  for (const n of lab.networks) {
    out.push(
      `  ${dotString(`net:${n.name}`)} [shape=ellipse, style=filled, fillcolor="#e8f0fe", label=${dotString(networkLines(n).join("\n"))}];`,
    );
  }
  for (const m of lab.machines) {
    out.push(
      `  ${dotString(`machine:${m.name}`)} [shape=box, label=${dotString(machineLines(m).join("\n"))}];`,
    );
  }
  for (const m of lab.machines) {
    for (const [net, a] of Object.entries(m.addresses)) {
      out.push(`  ${dotString(`machine:${m.name}`)} -- ${dotString(`net:${net}`)} [label=${dotString(a)}];`);
    }
  }
  out.push("}");
  return `${out.join("\n")}\n`;
}

// ---------------------------------------------------------------- mermaid

/** Mermaid ids: names allow only [a-z0-9-]; '-' next to an edge reads as an arrow, so map it to '_'. */
function mermaidId(prefix: string, name: string): string {
  return `${prefix}_${name.replace(/-/g, "_")}`;
}

/** Labels go in double quotes; a double quote inside is written as an entity. */
function mermaidLabel(lines: string[]): string {
  return `"${lines.map((l) => l.replace(/"/g, "#quot;")).join("<br/>")}"`;
}

function toMermaid(lab: Lab): string {
  const out: string[] = ["flowchart LR"];
  for (const n of lab.networks) out.push(`  ${mermaidId("net", n.name)}{{${mermaidLabel(networkLines(n))}}}`);
  for (const m of lab.machines) out.push(`  ${mermaidId("m", m.name)}[${mermaidLabel(machineLines(m))}]`);
  for (const m of lab.machines) {
    for (const [net, a] of Object.entries(m.addresses)) {
      out.push(`  ${mermaidId("m", m.name)} ---|${mermaidLabel([a])}| ${mermaidId("net", net)}`);
    }
  }
  return `${out.join("\n")}\n`;
}
