/**
 * NAT for private envs, on real machines: the agent's "host" is a network
 * namespace of the test's, wired by a veth to an "outside" namespace that
 * serves HTTP and has no route to the private range. An env without --nat
 * cannot reach it; one with --nat can (its replies come back only because the
 * source was masqueraded); stop and cleanup remove the rules.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run, spawnDirect } from "../../../common/exec.js";
import { silentLogger } from "../../../common/logger.js";
import { collect, type MachineTestBed, makeMachineTestBed } from "../../../test/support/agent/machines.js";
import type { MachineSpec } from "../interfaces.js";
import { NspawnMachineDriver } from "../machines/nspawn-driver.js";

const NODE = `nat${process.pid}`;
const H = `ptnat${process.pid}h`;
const O = `ptnat${process.pid}o`;
const OUTSIDE = "10.77.0.2";
let bed: MachineTestBed;
let driver: NspawnMachineDriver;
let httpd: ReturnType<typeof spawnDirect> | undefined;
let docroot: string;

function spec(name: string, rootDir: string, nat: boolean): MachineSpec {
  return { name, rootDir, boot: false, limits: {}, network: { mode: "private", nat }, env: {} };
}

const rules = async () =>
  (await run("ip", ["netns", "exec", H, "iptables-save"])).stdout
    .split("\n")
    .filter((l) => l.includes(`protoctl:${NODE}/`));

beforeAll(async () => {
  for (const ns of [H, O]) await run("ip", ["netns", "add", ns]);
  await run("ip", ["-n", H, "link", "add", "up0", "type", "veth", "peer", "name", "out0", "netns", O]);
  await run("ip", ["-n", H, "addr", "add", "10.77.0.1/30", "dev", "up0"]);
  await run("ip", ["-n", O, "addr", "add", `${OUTSIDE}/30`, "dev", "out0"]);
  for (const [ns, dev] of [
    [H, "up0"],
    [O, "out0"],
    [H, "lo"],
    [O, "lo"],
  ] as const)
    await run("ip", ["-n", ns, "link", "set", dev, "up"]);
  docroot = mkdtempSync(join(tmpdir(), "protoctl-nat-www-"));
  writeFileSync(join(docroot, "hi"), "from outside\n");
  httpd = spawnDirect(
    "ip",
    ["netns", "exec", O, "busybox", "httpd", "-f", "-p", `${OUTSIDE}:8080`, "-h", docroot],
    { stdio: "ignore" },
  );
  bed = await makeMachineTestBed();
  driver = new NspawnMachineDriver({ node: NODE, stateDir: bed.stateDir, logger: silentLogger(), netns: H });
});

afterAll(async () => {
  for (const m of (await driver?.list()) ?? []) {
    await driver.stop(m.name, { timeoutMs: 1000, force: true }).catch(() => undefined);
    await driver.cleanup(m.name).catch(() => undefined);
  }
  await bed?.cleanup();
  httpd?.kill("SIGKILL");
  for (const ns of [H, O]) await run("ip", ["netns", "del", ns], { allowFailure: true });
  if (docroot) rmSync(docroot, { recursive: true, force: true });
});

async function fetchOutside(env: string): Promise<{ code: number; stdout: string }> {
  const r = await collect(
    await driver.exec({
      name: env,
      // busybox's static wget crashes on this rootfs; nc speaks the one HTTP request we need
      command: ["sh", "-c", `printf 'GET /hi HTTP/1.0\r\n\r\n' | nc -w 3 ${OUTSIDE} 8080`],
      tty: false,
    }),
  );
  // the body, once the server answered 200
  const ok = r.code === 0 && /^HTTP\/1\.[01] 200/.test(r.stdout);
  return {
    code: ok ? 0 : r.code || 1,
    stdout: ok ? r.stdout.slice(r.stdout.indexOf("\r\n\r\n") + 4) : r.stdout,
  };
}

it("a private env reaches the outside only with NAT, and its rules go with it", async () => {
  await driver.start(spec("closed", await bed.envRoot("closed"), false));
  const closed = await fetchOutside("closed");
  expect(closed.code).not.toBe(0);
  expect(await rules()).toEqual([]);

  await driver.start(spec("natted", await bed.envRoot("natted"), true));
  const addr = driver.addresses("natted")?.[0];
  expect(addr).toMatch(/^10\.213\./);
  let got = await fetchOutside("natted");
  for (let i = 0; i < 10 && got.code !== 0; i++) got = await fetchOutside("natted"); // httpd may still start
  expect(got).toMatchObject({ code: 0, stdout: "from outside\n" });
  const r = await rules();
  expect(r.some((l) => l.includes("MASQUERADE") && l.includes(`${addr}/32`))).toBe(true);
  expect(r.filter((l) => l.includes("FORWARD"))).toHaveLength(2);
  // the env without NAT stays closed even now that the namespace forwards
  expect((await fetchOutside("closed")).code).not.toBe(0);

  for (const n of ["natted", "closed"]) {
    await driver.stop(n, { timeoutMs: 2000 });
    await driver.cleanup(n);
  }
  expect(await rules()).toEqual([]);
});
