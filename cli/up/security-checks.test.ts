import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { contextCheck, upStateChecks } from "./security-checks.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function state(children: Array<{ name: string; args: string[] }>, mode = 0o700): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), "protoctl-seccheck-"));
  await mkdir(join(dir, "run"));
  await writeFile(
    join(dir, "run/children.json"),
    JSON.stringify({ children: children.map((c) => ({ ...c, command: "x" })) }),
  );
  await chmod(dir, mode);
  return dir;
}

const byName = (rows: ReturnType<typeof upStateChecks>) => Object.fromEntries(rows.map((r) => [r.name, r]));

describe("doctor's control-plane rows", () => {
  it("a state dir from the old up: plaintext etcd and the CA key in etcd are reported", async () => {
    const d = await state(
      [
        { name: "etcd", args: ["--listen-client-urls", "http://127.0.0.1:2379"] },
        { name: "controller", args: ["--etcd", "http://127.0.0.1:2379"] },
      ],
      0o755,
    );
    const rows = byName(upStateChecks(d));
    expect(rows["etcd-access"]?.ok).toBe(false);
    expect(rows["etcd-access"]?.detail).toContain("without client certificates");
    expect(rows["ca-key"]?.ok).toBe(false);
    expect(rows["ca-key"]?.detail).toContain("kept in etcd");
    expect(rows["state-dir"]?.ok).toBe(false);
    expect(rows["control-tls"]?.ok).toBe(true);
    expect(Object.values(rows).every((r) => r.group === "security" && !r.required)).toBe(true);
  });

  it("today's up: everything ok once the CA key is 0600; --insecure is reported", async () => {
    const d = await state([
      {
        name: "etcd",
        args: ["--listen-client-urls", "https://127.0.0.1:2379", "--client-cert-auth"],
      },
      { name: "controller", args: ["--ca-store", "disk", "--insecure"] },
      { name: "agent", args: ["--insecure"] },
    ]);
    expect(byName(upStateChecks(d))["ca-key"]?.detail).toContain("missing");
    await mkdir(join(d, "controller/ca"), { recursive: true });
    await writeFile(join(d, "controller/ca/ca.key"), "k", { mode: 0o644 });
    expect(byName(upStateChecks(d))["ca-key"]?.ok).toBe(false);
    await chmod(join(d, "controller/ca/ca.key"), 0o600);
    const rows = byName(upStateChecks(d));
    expect(rows["etcd-access"]?.ok).toBe(true);
    expect(rows["ca-key"]?.ok).toBe(true);
    expect(rows["state-dir"]?.ok).toBe(true);
    expect(rows["control-tls"]?.ok).toBe(false);
    expect(rows["control-tls"]?.detail).toContain("INSECURE");
  });

  it("no up state: no rows; an insecure context is a warning, the built-in default is not judged", async () => {
    expect(upStateChecks("/nonexistent/protoctl-state")).toEqual([]);
    const base = { controller: "10.0.0.1:7443", name: "lab", source: "context" as const };
    expect(contextCheck({ ...base, insecure: true })[0]?.ok).toBe(false);
    expect(contextCheck({ ...base, caData: "x" })[0]?.ok).toBe(true);
    expect(contextCheck({ ...base, insecure: true, source: "default" })).toEqual([]);
    expect(contextCheck(undefined)).toEqual([]);
  });
});
