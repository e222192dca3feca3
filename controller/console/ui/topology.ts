/**
 * A lab drawn as SVG: networks in a row on top, machines below grouped by
 * the node they run on, a line for each machine–network membership labelled
 * with the address. A machine is clickable (opens its env).
 */

import type { ConsoleLab } from "../view-types.js";
import { s } from "./dom.js";

const NET_W = 150;
const BOX_W = 150;
const BOX_H = 54;
const GAP = 24;

export function topology(lab: ConsoleLab, open: (env: string) => void): SVGElement {
  const byNode = new Map<string, ConsoleLab["machines"]>();
  for (const m of lab.machines) {
    const k = m.node || "(unplaced)";
    byNode.set(k, [...(byNode.get(k) ?? []), m]);
  }
  const machineCount = lab.machines.length;
  const width =
    Math.max(lab.networks.length * (NET_W + GAP), machineCount * (BOX_W + GAP) + byNode.size * GAP, 320) +
    GAP;
  const netY = 40;
  const boxY = 170;
  const height = boxY + BOX_H + 50;
  const svg = s("svg", {
    class: "topology",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `topology of lab ${lab.name}`,
    "data-lab": lab.name,
  });
  const netX = new Map<string, number>();
  const netStep = width / Math.max(1, lab.networks.length);
  for (const [i, n] of lab.networks.entries()) netX.set(n.name, netStep * i + netStep / 2);

  const machineX = new Map<string, number>();
  let x = GAP;
  const groups: SVGElement[] = [];
  for (const [node, ms] of byNode) {
    const w = ms.length * (BOX_W + GAP) - GAP + 16;
    groups.push(
      s(
        "g",
        { class: "node-group", "data-node": node },
        s("rect", {
          x: x - 8,
          y: boxY - 22,
          width: w,
          height: BOX_H + 34,
          rx: 6,
          fill: "none",
          stroke: "#c9d1de",
          "stroke-dasharray": "4 3",
        }),
        s("text", { x: x - 4, y: boxY - 8, class: "small" }, `node ${node}`),
      ),
    );
    for (const m of ms) {
      machineX.set(m.name, x + BOX_W / 2);
      x += BOX_W + GAP;
    }
    x += GAP;
  }

  for (const m of lab.machines) {
    for (const [net, addr] of Object.entries(m.addresses)) {
      const nx = netX.get(net);
      const mx = machineX.get(m.name);
      if (nx === undefined || mx === undefined) continue;
      svg.append(s("line", { x1: nx, y1: netY + 18, x2: mx, y2: boxY }));
      // near the machine's end, where lines from different networks have spread apart
      const t = 0.78;
      svg.append(
        s("text", { x: nx + (mx - nx) * t + 4, y: netY + 18 + (boxY - netY - 18) * t, class: "small" }, addr),
      );
    }
  }
  for (const n of lab.networks) {
    const cx = netX.get(n.name)!;
    svg.append(
      s(
        "g",
        { class: "network", "data-network": n.name },
        s("ellipse", { cx, cy: netY, rx: NET_W / 2, ry: 20 }),
        s("text", { x: cx, y: netY - 2, "text-anchor": "middle" }, n.name),
        s("text", { x: cx, y: netY + 12, "text-anchor": "middle", class: "small" }, n.subnet),
      ),
    );
  }
  for (const g of groups) svg.append(g);
  for (const m of lab.machines) {
    const cx = machineX.get(m.name)!;
    const g = s(
      "g",
      {
        class: "machine",
        "data-machine": m.name,
        "data-env": m.env,
        tabindex: 0,
        role: "button",
        onclick: () => open(m.env),
      },
      s("rect", { x: cx - BOX_W / 2, y: boxY, width: BOX_W, height: BOX_H, rx: 4 }),
      s("text", { x: cx, y: boxY + 18, "text-anchor": "middle" }, m.name),
      s("text", { x: cx, y: boxY + 34, "text-anchor": "middle", class: "small" }, m.phase),
      s("text", { x: cx, y: boxY + 47, "text-anchor": "middle", class: "small" }, m.env),
    );
    g.addEventListener("keydown", (e) => {
      if ((e as KeyboardEvent).key === "Enter") open(m.env);
    });
    svg.append(g);
  }
  return svg;
}
