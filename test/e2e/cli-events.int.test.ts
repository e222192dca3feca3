/**
 * `protoctl events` end to end: the built CLI against a real `protoctl up`
 * (test/e2e/cli-cluster.ts). The stream replays the cluster's history, then
 * follows: an env's create and delete events come in order (text and JSON),
 * a new one is seen while following, --kind and --since filter, and an
 * interrupt ends it cleanly. Bad flags give the usage exit code.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../cli/exit-codes.js";
import { type CliCluster, startCliCluster } from "./cli-cluster.js";

let c: CliCluster;

beforeAll(async () => {
  c = await startCliCluster("events", { base: "bb" });
}, 400_000);

afterAll(async () => {
  if (c) expect(await c.close()).toEqual([]);
}, 200_000);

interface Event {
  timeMs: number;
  kind: string;
  subject: string;
  message: string;
  node?: string;
  revision: number;
}

/**
 * Runs `events ARGS`; once `ready` holds for the lines seen (the replay has
 * caught up), calls `during`, and interrupts it (SIGINT, as Ctrl-C does) once
 * `until` holds. Returns the lines and how it ended.
 */
async function watch(
  args: string[],
  until: (lines: string[]) => boolean,
  opts: { ready?: (lines: string[]) => boolean; during?: () => Promise<void> } = {},
) {
  const p = c.spawnCli(["events", ...args]);
  let out = "";
  p.stdout.on("data", (d: Buffer) => (out += String(d)));
  const lines = () => out.split("\n").filter(Boolean);
  const waitUntil = async (ok: (ls: string[]) => boolean, what: string) => {
    const deadline = Date.now() + 60_000;
    while (!ok(lines())) {
      if (p.exitCode !== null) throw new Error(`events exited early (${p.exitCode}): ${out}`);
      if (Date.now() > deadline) throw new Error(`events never showed ${what}:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    if (opts.ready) await waitUntil(opts.ready, "the replayed history");
    await opts.during?.();
    await waitUntil(until, "what the test waits for");
  } finally {
    p.kill("SIGINT");
  }
  const done = await p;
  return { lines: lines(), done };
}

const endedByInterrupt = (done: { signal?: string; exitCode?: number; stderr: unknown }) => {
  expect(done.signal === "SIGINT" || done.exitCode === ExitCode.INTERRUPTED, JSON.stringify(done)).toBe(true);
  expect(String(done.stderr)).toBe("");
};

describe.sequential("protoctl events", () => {
  let created: Event[] = [];

  it("replays an env's create and delete events in order, then follows a new one (JSON)", async () => {
    expect((await c.cli(["env", "create", "ev-1", "--base", "bb"])).code).toBe(0);
    expect((await c.cli(["env", "rm", "ev-1"])).code).toBe(0);
    const has = (kind: string, subject: string) => (ls: string[]) =>
      ls.some((l) => l.includes(`"kind":"${kind}"`) && l.includes(`"subject":"${subject}"`));
    const { lines, done } = await watch(["-o", "json", "--kind", "env."], has("env.started", "env/ev-2"), {
      // the history is replayed: the new env is created once the stream has caught up
      ready: has("env.deleted", "env/ev-1"),
      during: async () => {
        expect((await c.cli(["env", "create", "ev-2", "--base", "bb"])).code).toBe(0);
      },
    });
    endedByInterrupt(done);
    const events = lines.map((l) => JSON.parse(l) as Event);
    expect(events.every((e) => e.kind.startsWith("env."))).toBe(true);
    const mine = events.filter((e) => e.subject === "env/ev-1");
    const kinds = mine.map((e) => e.kind);
    expect(kinds[0]).toBe("env.scheduled");
    expect(kinds).toContain("env.started");
    expect(kinds.indexOf("env.started")).toBeLessThan(kinds.indexOf("env.deleted"));
    expect(kinds.at(-1)).toBe("env.deleted");
    expect(mine.find((e) => e.kind === "env.started")).toMatchObject({ node: c.node });
    // in the order etcd recorded them
    const revs = events.map((e) => e.revision);
    expect(revs).toEqual([...revs].sort((a, b) => a - b));
    expect(new Set(revs).size).toBe(revs.length);
    // followed: the new env's events come after the replayed ones
    const next = events.filter((e) => e.subject === "env/ev-2");
    expect(next.map((e) => e.kind)).toContain("env.started");
    expect(next[0]!.revision).toBeGreaterThan(mine.at(-1)!.revision);
    created = mine;
    expect((await c.cli(["env", "rm", "ev-2"])).code).toBe(0);
  }, 120_000);

  it("replays history as text; --kind filters by prefix", async () => {
    const { lines, done } = await watch([], (ls) => ls.some((l) => /\senv\.deleted\s+env\/ev-1\s/.test(l)));
    endedByInterrupt(done);
    const line = (kind: string, subject: string) =>
      new RegExp(
        `^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\s+${kind.replace(".", "\\.")}\\s+${subject}\\s+\\S`,
      );
    const at = (kind: string, subject: string) => lines.findIndex((l) => line(kind, subject).test(l));
    expect(at("node.ready", `node/${c.node}`)).toBeGreaterThanOrEqual(0);
    expect(at("base.imported", "base/bb@1")).toBeGreaterThan(at("node.ready", `node/${c.node}`));
    expect(at("env.started", "env/ev-1")).toBeGreaterThan(at("base.imported", "base/bb@1"));
    expect(at("env.deleted", "env/ev-1")).toBeGreaterThan(at("env.started", "env/ev-1"));

    const bases = await watch(["-o", "json", "--kind", "base."], (ls) => ls.length >= 1);
    endedByInterrupt(bases.done);
    const kinds = bases.lines.map((l) => (JSON.parse(l) as Event).kind);
    expect(kinds).toEqual(["base.imported"]);
  }, 120_000);

  it("--since N replays the events after revision N (resume from the last one seen)", async () => {
    const deleted = created.find((e) => e.kind === "env.deleted")!;
    const from = await watch(
      ["-o", "json", "--kind", "env.", "--since", String(deleted.revision - 1)],
      (ls) => ls.length >= 1,
    );
    endedByInterrupt(from.done);
    expect(JSON.parse(from.lines[0]!)).toEqual(deleted);

    const after = await watch(
      ["-o", "json", "--kind", "env.", "--since", String(deleted.revision)],
      (ls) => ls.length >= 1,
    );
    endedByInterrupt(after.done);
    const events = after.lines.map((l) => JSON.parse(l) as Event);
    expect(events[0]).toMatchObject({ subject: "env/ev-2" });
    expect(events.every((e) => e.revision > deleted.revision)).toBe(true);
  }, 60_000);

  it("bad flags are usage errors", async () => {
    for (const args of [
      ["events", "--since", "yesterday"],
      ["events", "-o", "xml"],
      ["events", "--bogus"],
    ]) {
      const r = await c.cli(args, { timeoutMs: 30_000 });
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(ExitCode.USAGE);
      expect(r.stdout).toBe("");
    }
  }, 60_000);
});
