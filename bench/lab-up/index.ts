/**
 * lab-up: a 10-machine lab over 3 nodes, base present (busybox imported on
 * every node), on the real thing: three network-namespace hosts, etcd, a
 * controller and three agents (test/e2e/lab-cluster.ts).
 *
 *  - up: `ApplyLab(wait)` from the call until every machine pings every
 *    other one by name (one exec per machine, all at once, retried until all
 *    succeed); `apply_ms` is the call alone;
 *  - down: `DeleteLab(wait)` until the lab record is gone (machines,
 *    bridges, VXLANs, addresses removed).
 * Targets (issue 7): up ≤ 5 s, down ≤ 2 s. Medians over `--runs` (default 3).
 *
 * Usage: npm run bench -- lab-up [--runs N] [--machines N]
 * Root only. Last stdout line is the JSON result.
 */

import { applyLab, execIn, startLabCluster } from "../../test/e2e/lab-cluster.js";
import { call } from "../../test/support/controller/cluster.js";

const TARGET_UP_MS = 5000;
const TARGET_DOWN_MS = 2000;
/** Pings every name given as an argument once; fails on the first miss. Names are never part of the script. */
const PING_ALL = ["/bin/sh", "-c", 'for h in "$@"; do ping -c 1 -W 1 "$h" >/dev/null || exit 1; done', "sh"];

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? 0;
}

const runs = arg("runs", 3);
const count = arg("machines", 10);
const names = Array.from({ length: count }, (_, i) => `m-${i + 1}`);
const spec = `
name: bench
networks:
  lan: 10.80.0.0/24
machines:
  m-{1..${count}}: { base: busybox, networks: [lan] }
`;

const cl = await startLabCluster({ hosts: 3 });
const up: number[] = [];
const apply: number[] = [];
const down: number[] = [];
const spread: number[][] = [];
try {
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await applyLab(cl.c, spec);
    apply.push(performance.now() - t0);
    await Promise.all(
      names.map(async (m) => {
        const others = names.filter((n) => n !== m);
        for (;;) {
          if ((await execIn(cl.c, `bench-${m}`, [...PING_ALL, ...others])).code === 0) return;
          if (performance.now() - t0 > 60_000) throw new Error(`${m} does not reach its peers`);
        }
      }),
    );
    up.push(performance.now() - t0);
    const lab = await call(cl.c, "getLab", { name: "bench" });
    const per = new Map<string, number>();
    for (const m of lab.machines) per.set(m.node, (per.get(m.node) ?? 0) + 1);
    spread.push([...per.values()].sort((a, b) => b - a));
    const t1 = performance.now();
    await call(cl.c, "deleteLab", { name: "bench", wait: true }, 60_000);
    down.push(performance.now() - t1);
    console.log(
      `run ${r + 1}: up ${up.at(-1)!.toFixed(0)} ms (apply ${apply.at(-1)!.toFixed(0)} ms), down ${down.at(-1)!.toFixed(0)} ms, per node ${spread.at(-1)!.join("/")}`,
    );
  }
} finally {
  await cl.stop();
}
const result = {
  bench: "lab-up",
  machines: count,
  nodes: 3,
  runs,
  up_reachable_ms_p50: Math.round(median(up)),
  apply_ms_p50: Math.round(median(apply)),
  down_ms_p50: Math.round(median(down)),
  up_ms: up.map(Math.round),
  down_ms: down.map(Math.round),
  per_node: spread,
  target_up_ms: TARGET_UP_MS,
  target_down_ms: TARGET_DOWN_MS,
  ok: median(up) <= TARGET_UP_MS && median(down) <= TARGET_DOWN_MS,
};
console.log(JSON.stringify(result));
if (!result.ok) process.exitCode = 1;
