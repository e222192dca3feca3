import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "../../../common/errors.js";
import { silentLogger } from "../../../common/logger.js";
import { collect, type MachineTestBed, makeMachineTestBed } from "../../../test/support/agent/machines.js";
import type { MachineSpec } from "../interfaces.js";
import { NetworkDriver } from "../networks/network-driver.js";
import { cgroupPids, detectHierarchies, envCgroupSet, memoryStats } from "./cgroups.js";
import { vethHostName } from "./naming.js";
import { NspawnMachineDriver } from "./nspawn-driver.js";
import { cmdline, isAlive } from "./proc.js";

const NODE = `mt${process.pid}`;

/** Connects, reads until the server closes, or says why not. */
function readOnce(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect(port, host);
    let got = "";
    const t = setTimeout(() => {
      sock.destroy();
      resolve(`timeout ${got}`);
    }, 2000);
    sock.on("data", (b) => {
      got += b.toString();
    });
    sock.on("end", () => {
      clearTimeout(t);
      resolve(got);
    });
    sock.on("error", (e) => {
      clearTimeout(t);
      resolve(`error ${e.message}`);
    });
  });
}
let bed: MachineTestBed;
let driver: NspawnMachineDriver;

function spec(name: string, rootDir: string, over: Partial<MachineSpec> = {}): MachineSpec {
  return { name, rootDir, boot: false, limits: {}, network: { mode: "none" }, env: {}, ...over };
}

beforeAll(async () => {
  bed = await makeMachineTestBed();
  driver = new NspawnMachineDriver({ node: NODE, stateDir: bed.stateDir, logger: silentLogger() });
});

afterAll(async () => {
  for (const m of (await driver?.list()) ?? []) {
    await driver.stop(m.name, { timeoutMs: 1000, force: true }).catch(() => undefined);
    await driver.cleanup(m.name).catch(() => undefined);
  }
  await bed?.cleanup();
});

describe("NspawnMachineDriver", () => {
  it("starts, execs with streams and exit codes, stops, and leaves nothing", async () => {
    const root = await bed.envRoot("basic");
    const st = await driver.start(spec("basic", root, { env: { GREETING: "hello" } }));
    expect(st.running).toBe(true);
    expect(st.leaderPid).toBeGreaterThan(1);

    const t0 = performance.now();
    const t = await collect(await driver.exec({ name: "basic", command: ["true"], tty: false }));
    const trueMs = performance.now() - t0;
    expect(t.code).toBe(0);
    console.log(`exec true: ${trueMs.toFixed(1)} ms`);

    const r = await collect(
      await driver.exec({
        name: "basic",
        command: ["sh", "-c", 'echo "$GREETING $X"; echo err >&2; hostname; pwd; exit 3'],
        tty: false,
        env: { X: "world" },
        workdir: "/tmp",
      }),
    );
    expect(r).toEqual({ stdout: "hello world\nbasic\n/tmp\n", stderr: "err\n", code: 3 });

    const c = await collect(
      await driver.exec({ name: "basic", command: ["cat"], tty: false }),
      "round trip\n",
    );
    expect(c.stdout).toBe("round trip\n");

    // processes see the env's cgroups (inside the cgroup namespace: the root)
    const cg = await collect(
      await driver.exec({ name: "basic", command: ["cat", "/proc/self/cgroup"], tty: false }),
    );
    expect(cg.stdout).toMatch(/memory:\/\n/);

    const sleeper = await driver.exec({ name: "basic", command: ["sleep", "100"], tty: false });
    await new Promise((r) => setTimeout(r, 100));
    sleeper.signal("SIGTERM");
    expect((await collect(sleeper)).code).toBe(143);

    const nspawnPid = st.nspawnPid!;
    const stopped = await driver.stop("basic", { timeoutMs: 5000 });
    expect(stopped.running).toBe(false);
    expect(isAlive(nspawnPid)).toBe(false);
    const set = envCgroupSet(detectHierarchies(), NODE, "basic");
    for (const d of Object.values(set.dirs)) expect(existsSync(d)).toBe(false);
    await driver.cleanup("basic");
    expect(existsSync(join(bed.stateDir, "machines", "basic.json"))).toBe(false);
  });

  it("holds memory, pids and cpu limits", async () => {
    const root = await bed.envRoot("limits");
    await driver.start(spec("limits", root, { limits: { memoryBytes: 64 * 2 ** 20, pids: 20, cpus: 0.5 } }));
    const set = envCgroupSet(detectHierarchies(), NODE, "limits");
    expect(readFileSync(join(set.dirs.cpu!, "cpu.cfs_quota_us"), "utf8").trim()).toBe("50000");
    expect(readFileSync(join(set.dirs.pids!, "pids.max"), "utf8").trim()).toBe("20");

    const oom = await collect(
      await driver.exec({
        name: "limits",
        command: ["sh", "-c", "head -c 209715200 /dev/zero | tail > /dev/null"],
        tty: false,
      }),
    );
    expect(oom.code).toBe(137);
    expect(memoryStats(set)?.oomKills).toBeGreaterThan(0);

    const bomb = await collect(
      await driver.exec({
        name: "limits",
        command: ["sh", "-c", "for i in $(seq 50); do sleep 30 & done"],
        tty: false,
      }),
    );
    expect(bomb.stderr).toMatch(/fork/);
    expect(cgroupPids(set).length).toBeLessThanOrEqual(20);

    await driver.stop("limits", { timeoutMs: 2000 });
    await driver.cleanup("limits");
  });

  it("refuses limits the host cannot enforce, before making anything", async () => {
    // this host without its memory and cpu controllers, as a host that lacks them looks
    const { memory: _m, cpu: _c, ...rest } = detectHierarchies();
    const stateDir = join(bed.stateDir, "no-limits");
    const d = new NspawnMachineDriver({ node: NODE, stateDir, logger: silentLogger(), hierarchies: rest });
    const root = await bed.envRoot("nolimit");
    const err = await d
      .start(spec("nolimit", root, { limits: { memoryBytes: 64 * 2 ** 20, cpus: 0.5, pids: 20 } }))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.FAILED_PRECONDITION, reason: "LIMITS_UNENFORCEABLE" });
    expect((err as Error).message).toMatch(/--memory \(memory controller\), --cpus \(cpu controller\)/);
    expect(() => d.prewarm("nolimit", { memoryBytes: 1 << 26 })).toThrow(/cannot enforce --memory/);
    expect((await d.state("nolimit")).running).toBe(false);
    expect(existsSync(join(stateDir, "machines", "nolimit.json"))).toBe(false);
    for (const dir of Object.values(envCgroupSet(rest, NODE, "nolimit").dirs))
      expect(existsSync(dir)).toBe(false);
    // the controller it has still limits
    await d.start(spec("nolimit", root, { limits: { pids: 20 } }));
    const set = envCgroupSet(rest, NODE, "nolimit");
    expect(readFileSync(join(set.dirs.pids!, "pids.max"), "utf8").trim()).toBe("20");
    await d.stop("nolimit", { timeoutMs: 2000 });
    await d.cleanup("nolimit");
  });

  it("runs TTY sessions with resize", async () => {
    const root = await bed.envRoot("tty");
    await driver.start(spec("tty", root));
    const once = await collect(
      await driver.exec({ name: "tty", command: ["stty", "size"], tty: true, rows: 30, cols: 100 }),
    );
    expect(once.stdout.trim()).toBe("30 100");
    expect(once.code).toBe(0);

    const sh = await driver.exec({ name: "tty", command: ["sh"], tty: true, rows: 24, cols: 80 });
    let out = "";
    sh.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    sh.resize(40, 120);
    await new Promise((r) => setTimeout(r, 50));
    sh.stdin.write("stty size; exit 5\n");
    expect(await sh.exit).toBe(5);
    expect(out).toMatch(/40 120/);
    await driver.stop("tty", { timeoutMs: 2000 });
    await driver.cleanup("tty");
  });

  it("survives a new driver instance (adopt) and keeps logs", async () => {
    const root = await bed.envRoot("adopt");
    const st = await driver.start(spec("adopt", root));
    await collect(
      await driver.exec({
        name: "adopt",
        command: ["sh", "-c", "echo to-console > /proc/1/fd/1"],
        tty: false,
      }),
    );

    const again = new NspawnMachineDriver({ node: NODE, stateDir: bed.stateDir, logger: silentLogger() });
    const adopted = await again.adopt();
    const a = adopted.find((m) => m.name === "adopt");
    expect(a?.running).toBe(true);
    expect(a?.leaderPid).toBe(st.leaderPid);
    expect(
      (await collect(await again.exec({ name: "adopt", command: ["echo", "hi"], tty: false }))).stdout,
    ).toBe("hi\n");

    const chunks: string[] = [];
    for await (const l of again.logs("adopt", { follow: false })) chunks.push(l.data.toString());
    expect(chunks.join("")).toMatch(/to-console/);

    // follow ends when the machine stops
    const ac = new AbortController();
    const followed = (async () => {
      const got: string[] = [];
      for await (const l of again.logs("adopt", { follow: true, tailLines: 1, signal: ac.signal }))
        got.push(l.data.toString());
      return got.join("");
    })();
    await collect(
      await again.exec({ name: "adopt", command: ["sh", "-c", "echo later > /proc/1/fd/1"], tty: false }),
    );
    await new Promise((r) => setTimeout(r, 400));
    await again.stop("adopt", { timeoutMs: 2000 });
    const text = await followed;
    expect(text).toMatch(/later/);
    await again.cleanup("adopt");
    await driver.adopt();
  });

  it("gives a private network an address inside", async () => {
    const root = await bed.envRoot("net");
    await driver.start(spec("net", root, { network: { mode: "private", address: "10.213.7.2/24" } }));
    const r = await collect(
      await driver.exec({ name: "net", command: ["ip", "-4", "addr", "show", "host0"], tty: false }),
    );
    expect(r.stdout).toMatch(/10\.213\.7\.2\/24/);
    const host = vethHostName(NODE, "net");
    const nd = new NetworkDriver();
    expect(await nd.linkExists(host)).toBe(true);
    await driver.stop("net", { timeoutMs: 2000 });
    await driver.cleanup("net");
    expect(await nd.linkExists(host)).toBe(false);
  });

  it("execs as another user, by name (the env's /etc/passwd) or numeric id", async () => {
    const root = await bed.envRoot("users");
    await driver.start(spec("users", root));
    const add = await collect(
      await driver.exec({
        name: "users",
        command: ["sh", "-c", "echo 'app:x:1000:1001::/home/app:/bin/sh' >> /etc/passwd; mkdir -p /home/app"],
        tty: false,
      }),
    );
    expect(add.code).toBe(0);
    const who = ["sh", "-c", 'echo "$(id -u) $(id -g) $HOME $USER"; id -G'];
    const byName = await collect(await driver.exec({ name: "users", command: who, tty: false, user: "app" }));
    expect(byName).toEqual({ stdout: "1000 1001 /home/app app\n1001\n", stderr: "", code: 0 });
    const byId = await collect(
      await driver.exec({ name: "users", command: ["id", "-u"], tty: false, user: "1234:99" }),
    );
    expect(byId.stdout).toBe("1234\n");
    await expect(
      driver.exec({ name: "users", command: ["true"], tty: false, user: "nobody" }),
    ).rejects.toMatchObject({ reason: "USER_NOT_FOUND" });
    await expect(
      driver.exec({ name: "users", command: ["true"], tty: false, user: "a;b" }),
    ).rejects.toMatchObject({
      reason: "INVALID_USER",
    });
    await driver.stop("users", { timeoutMs: 2000 });
    await driver.cleanup("users");
  });

  it("keeps execs fast with pre-joined slots, and each lands in the env's cgroups", async () => {
    const root = await bed.envRoot("slots");
    await driver.start(spec("slots", root, { limits: { pids: 50 } }));
    const set = envCgroupSet(detectHierarchies(), NODE, "slots");
    const times: number[] = [];
    for (let i = 0; i < 8; i++) {
      // spaced out: without a slot, each exec would wait for its own cgroup join
      await new Promise((r) => setTimeout(r, 60));
      const t0 = performance.now();
      const r = await collect(
        await driver.exec({
          name: "slots",
          command: ["sh", "-c", `echo "$0 $1"; cat /proc/self/cgroup`, "a b", `${i}`],
          tty: false,
        }),
      );
      times.push(performance.now() - t0);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^a b ${i}\n`));
      expect(r.stdout).toMatch(/pids:\/\n/);
    }
    times.sort((a, b) => a - b);
    console.log(`exec via slot p50 ${times[4]!.toFixed(1)} ms`);
    // parallel execs: one takes the slot, the others join on their own
    const par = await Promise.all(
      Array.from({ length: 4 }, async (_, i) =>
        collect(await driver.exec({ name: "slots", command: ["echo", `p${i}`], tty: false })),
      ),
    );
    expect(par.map((p) => p.stdout)).toEqual(["p0\n", "p1\n", "p2\n", "p3\n"]);
    // the next slot is made once an exec has ended (off that exec's path): one idle slot waits
    // in the env's cgroups; stop ends it with everything else
    const slotIn = () => cgroupPids(set).some((p) => cmdline(p).includes("protoctl-slot"));
    for (let i = 0; i < 100 && !slotIn(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(slotIn()).toBe(true);
    await driver.stop("slots", { timeoutMs: 2000 });
    await driver.cleanup("slots");
    for (const d of Object.values(set.dirs)) expect(existsSync(d)).toBe(false);
  });

  it("forwards ports: nspawn's DNAT for host addresses, the agent's listener for loopback", async () => {
    const root = await bed.envRoot("ports");
    const hostPort = 20000 + (process.pid % 20000);
    await driver.start(
      spec("ports", root, {
        network: {
          mode: "private",
          address: "10.213.9.2/24",
          ports: [{ protocol: "tcp", hostPort, containerPort: 80 }],
        },
      }),
    );
    const server = await driver.exec({
      name: "ports",
      command: ["sh", "-c", "while :; do echo hello | nc -l -p 80; done"],
      tty: false,
    });
    const fetch = async (host: string) => {
      for (let i = 0; i < 20; i++) {
        const got = await readOnce(host, hostPort);
        if (got === "hello\n") return got;
        await new Promise((r) => setTimeout(r, 100));
      }
      return readOnce(host, hostPort);
    };
    expect(await fetch("127.0.0.1")).toBe("hello\n"); // loopback: the agent's listener
    expect(await fetch("10.213.9.1")).toBe("hello\n"); // the host side's address: nspawn's DNAT, no bus needed
    server.signal("SIGKILL");
    await driver.stop("ports", { timeoutMs: 2000 });
    await driver.cleanup("ports");
    expect(await readOnce("127.0.0.1", hostPort)).toMatch(/ECONNREFUSED/);
  });

  it("gives a private env without an address one of its own, and its port forwards answer", async () => {
    const hostPort = 20000 + ((process.pid + 7) % 20000);
    const roots = [await bed.envRoot("auto1"), await bed.envRoot("auto2")];
    const [a, b] = await Promise.all(
      ["auto1", "auto2"].map((name, i) =>
        driver.start(
          spec(name, roots[i]!, {
            network: {
              mode: "private",
              ports: i === 0 ? [{ protocol: "tcp", hostPort, containerPort: 80 }] : [],
            },
          }),
        ),
      ),
    );
    const addrs = [driver.addresses("auto1"), driver.addresses("auto2")];
    expect(addrs[0]).toHaveLength(1);
    expect(addrs[0]![0]).toMatch(/^10\.213\.\d+\.\d+$/);
    expect(addrs[1]![0]).not.toBe(addrs[0]![0]); // started together, no collision
    expect(a!.running && b!.running).toBe(true);
    const inside = await collect(
      await driver.exec({ name: "auto1", command: ["ip", "-4", "-o", "addr"], tty: false }),
    );
    expect(inside.stdout).toContain(`${addrs[0]![0]}/32`);
    const server = await driver.exec({
      name: "auto1",
      command: ["sh", "-c", "while :; do echo hello | nc -l -p 80; done"],
      tty: false,
    });
    const fetchHello = async (host: string) => {
      for (let i = 0; i < 30; i++) {
        const got = await readOnce(host, hostPort);
        if (got === "hello\n") return got;
        await new Promise((r) => setTimeout(r, 100));
      }
      return readOnce(host, hostPort);
    };
    expect(await fetchHello("127.0.0.1")).toBe("hello\n"); // the agent's loopback listener
    expect(await fetchHello("10.213.0.1")).toBe("hello\n"); // a host address: nspawn's DNAT
    server.signal("SIGKILL");
    for (const n of ["auto1", "auto2"]) {
      await driver.stop(n, { timeoutMs: 2000 });
      await driver.cleanup(n);
    }
  });

  it("reports a machine that cannot start", async () => {
    await expect(
      driver.start(spec("broken", join(bed.pool.mountpoint, "does-not-exist"))),
    ).rejects.toMatchObject({
      reason: "MACHINE_START_FAILED",
    });
    expect((await driver.state("broken")).running).toBe(false);
    // nothing of it stays in any hierarchy (memory is removed first, while nspawn may still be exiting)
    for (const dir of Object.values(envCgroupSet(detectHierarchies(), NODE, "broken").dirs)) {
      expect(existsSync(dir)).toBe(false);
    }
  });
});
