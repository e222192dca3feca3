/**
 * The Grafana dashboard only names metrics the daemons export: every
 * query's `protoctl_*` names (histograms through their _bucket/_sum/_count
 * series) are looked up in the controller's and the agent's registries, and
 * every label matcher names a label the metric has.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { agentRegistry } from "../../agent/metrics/metrics.js";
import { controllerRegistry } from "../../controller/metrics/metrics.js";

interface Panel {
  title: string;
  type: string;
  targets?: Array<{ expr: string }>;
}

const dashboard = JSON.parse(
  readFileSync(join(import.meta.dirname, "../../deploy/grafana/protoctl-fleet.json"), "utf8"),
) as {
  panels: Panel[];
  templating: { list: Array<{ name: string; definition?: string }> };
};

/** Series name -> its labels, for every series the registries can produce. */
async function exported(): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const reg of [controllerRegistry, agentRegistry]) {
    for (const m of reg.getMetricsAsArray()) {
      const labels = new Set<string>((m as unknown as { labelNames: string[] }).labelNames ?? []);
      const type = String((await (m as unknown as { get(): Promise<{ type: string }> }).get()).type);
      const names = type === "histogram" ? ["_bucket", "_sum", "_count"].map((s) => m.name + s) : [m.name];
      if (type === "histogram") labels.add("le");
      for (const n of names) out.set(n, labels);
    }
  }
  return out;
}

/** `name{a="x",b=~"y"}` -> [name, [a, b]] for each selector in a PromQL expression. */
function selectors(expr: string): Array<[string, string[]]> {
  const out: Array<[string, string[]]> = [];
  for (const m of expr.matchAll(/\b(protoctl_[a-z0-9_]+)(\{([^}]*)\})?/g)) {
    const labels = [...(m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!);
    out.push([m[1]!, labels]);
  }
  return out;
}

/** Labels named in `by (...)` clauses. */
function groupings(expr: string): string[] {
  return [...expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(",").map((s) => s.trim()));
}

describe("deploy/grafana/protoctl-fleet.json", async () => {
  const series = await exported();
  const queries = [
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr }))),
    ...dashboard.templating.list
      .filter((v) => v.definition)
      .map((v) => ({ where: `variable ${v.name}`, expr: v.definition! })),
  ];

  it("has the four sections", () => {
    const rows = dashboard.panels.filter((p) => p.type === "row").map((p) => p.title);
    expect(rows).toEqual([
      "Fleet overview",
      "Per node: pool and envs",
      "Push progress",
      "Latency percentiles",
    ]);
    expect(queries.length).toBeGreaterThan(30);
  });

  it("every query names only exported metrics and their labels", () => {
    const problems: string[] = [];
    for (const q of queries) {
      const sel = selectors(q.expr);
      if (sel.length === 0) problems.push(`${q.where}: no protoctl metric in ${q.expr}`);
      const known = new Set<string>();
      for (const [name, labels] of sel) {
        const have = series.get(name);
        if (!have) {
          problems.push(`${q.where}: ${name} is not exported`);
          continue;
        }
        for (const l of have) known.add(l);
        for (const l of labels) if (!have.has(l)) problems.push(`${q.where}: ${name} has no label ${l}`);
      }
      for (const l of groupings(q.expr))
        if (!known.has(l)) problems.push(`${q.where}: grouping by unknown ${l}`);
    }
    expect(problems).toEqual([]);
  });

  it("the check itself catches a misspelt metric and label", () => {
    expect(series.has("protoctl_envs")).toBe(true);
    expect(series.has("protoctl_agent_push_seconds_bucket")).toBe(true);
    expect(series.has("protoctl_env")).toBe(false);
    expect(selectors('rate(protoctl_x_total{node=~"$node",le="1"}[5m])')).toEqual([
      ["protoctl_x_total", ["node", "le"]],
    ]);
    expect(series.get("protoctl_pool_size_bytes")?.has("phase")).toBe(false);
  });
});
