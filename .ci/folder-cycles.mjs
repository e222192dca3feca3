#!/usr/bin/env node
/**
 * Reads dependency-cruiser's JSON (collapsed to top-level folders by
 * .dependency-cruiser.product.cjs) on stdin; prints each cycle between our
 * folders and exits 1 if there is one. Part of `npm run -s deps`.
 */
import { pathToFileURL } from "node:url";

/**
 * Cycles in a graph given as `{ source, dependencies: [{ resolved }] }[]`,
 * among folder nodes ("name/") only; each cycle once, as a list of nodes.
 */
export function folderCycles(modules) {
  const edges = new Map();
  for (const m of modules) {
    if (!m.source.endsWith("/")) continue;
    const to = m.dependencies.map((d) => d.resolved).filter((r) => r.endsWith("/") && r !== m.source);
    edges.set(m.source, [...new Set(to)].sort());
  }
  const cycles = new Map();
  const walk = (start, node, path) => {
    for (const next of edges.get(node) ?? []) {
      if (next === start) {
        const key = [...path].sort().join(" ");
        if (!cycles.has(key)) cycles.set(key, [...path, start]);
      } else if (!path.includes(next) && next > start) walk(start, next, [...path, next]);
    }
  };
  // a cycle is found from its smallest node only (next > start), so once
  for (const start of [...edges.keys()].sort()) walk(start, start, [start]);
  return [...cycles.values()];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const cycles = folderCycles(JSON.parse(input).modules);
  for (const c of cycles) console.error(`folder cycle: ${c.join(" → ")}`);
  if (cycles.length > 0) process.exitCode = 1;
  else console.log("no cycle between top-level folders");
}
