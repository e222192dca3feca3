/**
 * `base import --oci-archive` on a real cluster (issue 22 item 4): an OCI
 * archive built here (a busybox-static rootfs as a gzip layer, a plain second
 * layer whiting out a file of the first and adding the working directory; a
 * config with Cmd, Env and WorkingDir) becomes a base version whose seal holds
 * the image config; an env made from it in command mode runs the image's
 * command with that Env and WorkingDir; archives with an entry escaping the
 * root (`../escape`, a symlink climbing out) are refused and leave no version.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ProtoctlError } from "../../common/errors.js";
import type { ControlServiceClient } from "../../proto/gen/protoctl/v1/control.js";
import { EnvSpec, type OperationEvent } from "../../proto/gen/protoctl/v1/types.js";
import { writeOciArchive } from "../fixtures/oci-image.js";
import { makeBusyboxRootfs } from "../fixtures/rootfs.js";
import { call, eventually } from "../support/controller/cluster.js";
import { execIn, type LabCluster, startLabCluster } from "./lab-cluster.js";

let cl: LabCluster;
let node: string;
let dir: string;
const ENV = "oci-cmd";

function importOci(c: ControlServiceClient, name: string, archive: string): Promise<OperationEvent[]> {
  return new Promise((res, rej) => {
    const s = c.importBase();
    const evs: OperationEvent[] = [];
    s.on("data", (e: OperationEvent) => evs.push(e));
    s.on("end", () => res(evs));
    s.on("error", (e) => rej(ProtoctlError.from(e)));
    s.write({
      part: {
        $case: "header",
        header: {
          name,
          node,
          compression: "",
          format: "oci-archive",
          source: { source: { $case: "ociArchive", ociArchive: archive } },
        },
      },
    });
    s.end();
  });
}

function logsOf(c: ControlServiceClient, env: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const out: string[] = [];
    const s = c.envLogs({ env, follow: false, tailLines: 0 });
    s.on("data", (l) => out.push(Buffer.from(l.data).toString()));
    s.on("end", () => resolve(out.join("")));
    s.on("error", reject);
  });
}

beforeAll(async () => {
  cl = await startLabCluster({ hosts: 1 });
  node = cl.nodes[0]!;
  dir = await mkdtemp(join(tmpdir(), "protoctl-oci-"));
  const rootfs = join(dir, "rootfs");
  await mkdir(rootfs);
  await makeBusyboxRootfs(rootfs);
  await writeFile(join(rootfs, "etc/secret"), "lower layer\n");
}, 120_000);

afterAll(async () => {
  if (cl) {
    await call(cl.c, "deleteEnv", { name: ENV, wait: true }, 60_000).catch(() => undefined);
    await cl.stop();
  }
  if (dir) await rm(dir, { recursive: true, force: true });
}, 180_000);

describe("base import --oci-archive", () => {
  it("flattens the layers and runs the image's command with its Env and WorkingDir", async () => {
    const archive = join(dir, "image.tar");
    const digest = await writeOciArchive(
      archive,
      [
        { dir: join(dir, "rootfs"), gzip: true },
        {
          entries: [
            { name: "etc/.wh.secret", body: "" },
            { name: "srv/", type: "directory" },
            { name: "srv/app/", type: "directory" },
            { name: "srv/app/data.txt", body: "from layer two\n" },
          ],
        },
      ],
      {
        Env: ["PATH=/bin:/usr/bin", "GREETING=hello-oci"],
        WorkingDir: "/srv/app",
        Cmd: [
          "/bin/sh",
          "-c",
          'echo "greeting=$GREETING pwd=$(pwd) data=$(cat data.txt)"; [ -e /etc/secret ] && echo secret-present || echo secret-gone',
        ],
      },
    );
    await importOci(cl.c, "ocibox", archive);
    const base = await call(cl.c, "getBase", { name: "ocibox" });
    expect(base.versions).toHaveLength(1);
    const v = base.versions[0]!;
    expect(v.source).toBe(`oci:${archive}`);
    expect(`sha256:${v.recipeDigest}`).toBe(digest);
    // sealed with the version: what the controller recorded, not a node's report
    expect(v.origin).toBe(node);
    expect(v.image?.env).toEqual({ PATH: "/bin:/usr/bin", GREETING: "hello-oci" });
    expect(v.image?.workingDir).toBe("/srv/app");
    expect(v.image?.cmd[0]).toBe("/bin/sh");

    const spec = EnvSpec.fromPartial({ name: ENV, base: { name: "ocibox", version: 0 }, start: true });
    const env = await call(cl.c, "createEnv", { spec, wait: true }, 120_000);
    expect(env.spec?.command?.argv).toEqual(v.image?.cmd);
    expect(env.spec?.command?.workdir).toBe("/srv/app");
    const described = await call(cl.c, "getEnv", { name: ENV });
    expect(described.spec?.command?.env.GREETING).toBe("hello-oci");

    const logs = await eventually(async () => {
      const l = await logsOf(cl.c, ENV);
      return l.includes("exited with status") ? l : undefined;
    }, 30_000);
    expect(logs).toContain("greeting=hello-oci pwd=/srv/app data=from layer two");
    expect(logs).toContain("secret-gone");
    expect(logs).toContain("protoctl: the env command exited with status 0");
    // the env stays up after its command: exec still works, and the whiteout left no marker
    const ls = await execIn(cl.c, ENV, ["/bin/ls", "-a", "/etc", "/srv/app"]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).not.toMatch(/secret|\.wh\./);
    expect(ls.stdout).toContain("data.txt");
    const owner = await execIn(cl.c, ENV, ["/bin/stat", "-c", "%u:%g", "/srv/app/data.txt"]);
    expect(owner.stdout.trim()).toBe("0:0");
  }, 240_000);

  const escapes: Array<[string, Parameters<typeof writeOciArchive>[1]]> = [
    ["a ../ entry", [{ entries: [{ name: "../escape", body: "x" }] }]],
    [
      "a symlink climbing out of the root",
      [
        {
          entries: [
            { name: "bin/", type: "directory" },
            { name: "up", type: "symlink", linkname: "../../../../.." },
          ],
        },
        { entries: [{ name: "up/tmp/escape", body: "x" }], gzip: true },
      ],
    ],
  ];
  for (const [what, layers] of escapes) {
    it(`refuses an archive with ${what} and records no version`, async () => {
      const name = what.startsWith("a ../") ? "ocibad-dots" : "ocibad-link";
      const archive = join(dir, `${name}.tar`);
      await writeOciArchive(archive, layers, { Cmd: ["/bin/true"] });
      const err = await importOci(cl.c, name, archive).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProtoctlError);
      expect((err as ProtoctlError).code).toBe(Code.INVALID_ARGUMENT);
      expect((err as ProtoctlError).reason).toBe("PATH_ESCAPES_ROOT");
      expect((err as ProtoctlError).message).toMatch(/escape/);
      const bases = await call(cl.c, "listBases", {});
      expect(bases.bases.map((b) => b.name)).not.toContain(name);
      // the node reports no such version either (the staged tree went with the refusal)
      const nodes = await call(cl.c, "listNodes", {});
      const n = nodes.nodes.find((x) => x.name === node)!;
      expect([...n.baseVersions, ...n.foreignBaseVersions].some((r) => r.startsWith(`${name}@`))).toBe(false);
    }, 60_000);
  }
});
