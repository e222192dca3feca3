/**
 * A lab file cannot make the controller work without bound (issue #15 item 8):
 * aliases and merges go through the yaml library's alias limit, expansion
 * stops at the machine and network limits before building more.
 */
import { describe, expect, it } from "vitest";
import { Code } from "../../common/errors.js";
import { formatIssues, loadLabSpec, MAX_MACHINES, MAX_NETWORKS, parseLabSpec } from "./parse-spec.js";

/** ~600 bytes: each level merges the previous one twice and nests it once; 2^levels maps if expanded. */
function mergeBomb(levels = 20): string {
  const a = (i: number) => String.fromCharCode(97 + i);
  let s = "name: bomb\nx-a: &a {k: 1}\n";
  for (let i = 1; i < levels; i++)
    s += `x-${a(i)}: &${a(i)} {<<: [*${a(i - 1)}, *${a(i - 1)}], n: *${a(i - 1)}}\n`;
  return `${s}machines:\n  m: {base: b, <<: *${a(levels - 1)}}\n`;
}

/** Classic billion laughs through plain aliases in a list. */
function aliasBomb(): string {
  let s = "name: bomb\nx-0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (let i = 1; i < 9; i++)
    s += `x-${i}: &l${i} [${Array(9)
      .fill(`*l${i - 1}`)
      .join(",")}]\n`;
  return `${s}machines:\n  m: {base: b}\n`;
}

describe("alias and merge bombs", () => {
  it("refuses a ~600-byte merge bomb quickly, without expanding it", () => {
    const text = mergeBomb();
    expect(text.length).toBeLessThan(700);
    loadLabSpec("name: warm\nmachines:\n  m: {base: b}\n"); // load and JIT the parser first
    const runs: Array<{ wall: number; cpu: number }> = [];
    for (let i = 0; i < 5; i++) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      let err: unknown;
      try {
        loadLabSpec(text);
      } catch (e) {
        err = e;
      }
      const wall = performance.now() - t0;
      const c = process.cpuUsage(cpu0);
      runs.push({ wall, cpu: (c.user + c.system) / 1000 });
      expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "INVALID_LAB_SPEC" });
      expect((err as Error).message).toMatch(/anchors and aliases expand too much/);
    }
    const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const wall = med(runs.map((r) => r.wall));
    const cpu = med(runs.map((r) => r.cpu));
    console.log(
      `merge bomb of ${text.length} bytes refused: median of 5 ${wall.toFixed(1)} ms wall, ${cpu.toFixed(1)} ms cpu`,
    );
    // expanded, it would hold 2^21 merged maps; refusing takes milliseconds (generous bound: a shared machine)
    expect(cpu).toBeLessThan(1000);
  });

  it("refuses the billion-laughs alias bomb", () => {
    const t0 = performance.now();
    const r = parseLabSpec(aliasBomb());
    const ms = performance.now() - t0;
    console.log(`alias bomb refused in ${ms.toFixed(1)} ms`);
    expect(r.ok).toBe(false);
    expect(formatIssues(r.ok ? [] : r.issues).join("\n")).toMatch(/expand too much/);
    expect(ms).toBeLessThan(1000);
  });

  it("still applies ordinary merges, with positions and the mode as written", () => {
    const text = [
      "name: l", // 1
      "x-d: &d", // 2
      "  base: b", // 3
      "  files:", // 4
      "    - { path: /etc/a, content: x, mode: 0600 }", // 5
      "  boot: maybe", // 6
      "machines:", // 7
      "  m1: { <<: *d, boot: true }", // 8
      "  m2: { <<: *d }", // 9
    ].join("\n");
    const r = parseLabSpec(text);
    expect(r.ok).toBe(false);
    // m2's bad boot comes from the merged mapping: reported at its line there
    expect(formatIssues(r.ok ? [] : r.issues)).toEqual(["lab.yaml:6:9: boot must be true or false"]);
    const fixed = parseLabSpec(text.replace("boot: maybe", "boot: false"));
    if (!fixed.ok) throw new Error(formatIssues(fixed.issues).join("\n"));
    expect(fixed.spec.machines.map((m) => [m.name, m.boot, m.files[0]?.mode])).toEqual([
      ["m1", true, 0o600],
      ["m2", false, 0o600],
    ]);
  });
});

describe("expansion limits", () => {
  it(`refuses more than ${MAX_MACHINES} machines before building them`, () => {
    const lines = ["name: l", "machines:"];
    for (let i = 0; i < 400; i++) lines.push(`  m${i}: { base: b, count: 512 }`);
    const t0 = performance.now();
    const r = parseLabSpec(lines.join("\n"));
    const ms = performance.now() - t0;
    console.log(`400 templates × 512 refused in ${ms.toFixed(1)} ms`);
    expect(r.ok).toBe(false);
    expect(formatIssues(r.ok ? [] : r.issues)).toContain(
      `lab.yaml:4:25: the lab expands to more than ${MAX_MACHINES} machines (at 'm1'); at most ${MAX_MACHINES} are allowed`,
    );
  });

  it(`refuses more than ${MAX_NETWORKS} networks`, () => {
    const lines = ["name: l", "networks:"];
    for (let i = 0; i <= MAX_NETWORKS; i++) lines.push(`  n${i}: 10.${i >> 8}.${i & 255}.0/24`);
    lines.push("machines:", "  m: { base: b }");
    const r = parseLabSpec(lines.join("\n"));
    expect(r.ok).toBe(false);
    expect(formatIssues(r.ok ? [] : r.issues).join("\n")).toMatch(
      `the lab defines ${MAX_NETWORKS + 1} networks; at most ${MAX_NETWORKS} are allowed`,
    );
  });

  it("refuses more than 256 files on one machine", () => {
    const files = Array.from({ length: 257 }, (_, i) => `{ path: /f${i}, content: x }`).join(", ");
    const r = parseLabSpec(`name: l\nmachines:\n  m: { base: b, files: [${files}] }\n`);
    expect(r.ok).toBe(false);
    expect(formatIssues(r.ok ? [] : r.issues).join("\n")).toMatch(/at most 256 files \(has 257\)/);
  });
});
