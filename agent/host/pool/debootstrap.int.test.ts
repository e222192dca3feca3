/**
 * The slow path, once: a Debian bookworm minbase built with debootstrap (from
 * the mirror apt uses here, python3 included) and an Ansible layer on it,
 * run through the agent's nspawn connection plugin. ~1-2 minutes.
 */
import { lstat, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../common/logger.js";
import { mountsUnder } from "./mounts.js";
import { type BtrfsPool, openPool } from "./pool.js";

let stateDir: string;
let pool: BtrfsPool;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "protoctl-debootstrap-"));
  pool = await openPool({ kind: "tmpfs", stateDir, sizeBytes: 1536 * 1024 * 1024 }, silentLogger());
  await pool.buildBase("bookworm", { debootstrap: { suite: "bookworm", packages: ["python3"] } });
}, 600_000);

afterAll(async () => {
  await pool?.destroy();
  await rm(stateDir, { recursive: true, force: true });
});

const PLAYBOOK = `- hosts: all
  gather_facts: false
  tasks:
    - name: config from the recipe's files
      ansible.builtin.copy:
        src: files/motd
        dest: /etc/motd
        mode: "0644"
    - name: a line in a file
      ansible.builtin.lineinfile:
        path: /etc/protoctl-layer
        line: "layer=web"
        create: true
    - name: python runs inside the tree
      ansible.builtin.command: /usr/bin/python3 -c "open('/etc/py-was-here','w').write('yes')"
      args:
        creates: /etc/py-was-here
`;

describe("debootstrap base + Ansible layer", () => {
  it("builds a minbase with python3 and seals it", async () => {
    const [m] = await pool.listBaseVersions("bookworm");
    expect(m).toMatchObject({ base: "bookworm", version: 1, source: "debootstrap:bookworm/minbase+python3" });
    expect(m!.sizeBytes).toBeGreaterThan(100 * 1024 * 1024);
    const root = join(pool.mountpoint, "@base/bookworm@1/root");
    expect(await readFile(join(root, "etc/debian_version"), "utf8")).toMatch(/^12\./);
    await lstat(join(root, "usr/bin/python3"));
  });

  it("builds an Ansible layer whose upper holds only the playbook's changes", async () => {
    const logs: string[] = [];
    const meta = await pool.buildLayer(
      {
        name: "web",
        kind: "ansible",
        main: Buffer.from(PLAYBOOK),
        files: [{ path: "files/motd", content: Buffer.from("welcome to web\n"), mode: 0o644 }],
        parents: [],
      },
      "bookworm",
      1,
      (p) => p.log && logs.push(p.log),
    );
    expect(meta).toMatchObject({ layer: "web", base: "bookworm@1", kind: "ansible" });
    expect(logs.join("")).toMatch(/PLAY RECAP/);
    const upper = join(
      pool.mountpoint,
      "@overlay/web",
      `bookworm@1.${meta.digest.slice(0, 16)}`,
      "vol/upper",
    );
    const top = (await readdir(upper)).sort();
    expect(top).toEqual(["etc"]);
    const etc = (await readdir(join(upper, "etc"))).sort();
    expect(etc).toEqual(["motd", "protoctl-layer", "py-was-here"]);

    const env = await pool.prepareEnvRoot("web-1", "bookworm", 1, ["web"]);
    expect(await readFile(join(env.rootDir, "etc/motd"), "utf8")).toBe("welcome to web\n");
    expect(await readFile(join(env.rootDir, "etc/protoctl-layer"), "utf8")).toBe("layer=web\n");
    await pool.removeEnvRoot("web-1");
    expect(await mountsUnder(pool.mountpoint)).toEqual([]);
  });

  it("reports a failing playbook's output and records nothing", async () => {
    const bad = `- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: /bin/false\n`;
    const err = await pool
      .buildLayer(
        { name: "bad", kind: "ansible", main: Buffer.from(bad), files: [], parents: [] },
        "bookworm",
        1,
      )
      .catch((e) => e);
    expect(err).toMatchObject({ reason: "RECIPE_FAILED" });
    expect(err.output).toMatch(/FAILED|fatal/);
    expect((await pool.listLayerBuilds()).map((b) => b.layer)).toEqual(["web"]);
  });
});
