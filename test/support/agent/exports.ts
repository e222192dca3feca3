/**
 * Helpers for the propagation integration tests (not used in production):
 * a read-only base subvolume with a busybox rootfs plus large random files,
 * content digests to compare trees, a tmpfs state directory, a throwaway CA.
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { run } from "../../../common/exec.js";
import { makeBusyboxRootfs } from "../../fixtures/rootfs.js";

const MiB = 1024 * 1024;

/** Writes `sizeMiB` of random bytes to `path`. */
export async function writeRandomFile(path: string, sizeMiB: number): Promise<void> {
  const ws = createWriteStream(path);
  for (let i = 0; i < sizeMiB; i++) {
    if (!ws.write(randomBytes(MiB))) await new Promise<void>((r) => ws.once("drain", () => r()));
  }
  await new Promise<void>((resolve, reject) =>
    ws.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
}

/**
 * Creates subvolume `<parent>/<name>` with a busybox rootfs and random files
 * of the given sizes (`/data/big-<i>`), then makes it read-only.
 */
export async function makeBaseSubvolume(
  parent: string,
  name: string,
  bigMiB: number[] = [],
): Promise<string> {
  const path = join(parent, name);
  await run("btrfs", ["subvolume", "create", path]);
  await makeBusyboxRootfs(path);
  await mkdir(join(path, "data"));
  await writeFile(join(path, "etc/motd"), `base ${name}\n`);
  for (const [i, size] of bigMiB.entries()) await writeRandomFile(join(path, "data", `big-${i}`), size);
  await run("btrfs", ["property", "set", "-ts", path, "ro", "true"]);
  return path;
}

/** Map of relative path → "file:<sha256>" | "link:<target>" | "dir", for comparing trees. */
export async function treeDigest(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const rel = relative(root, p);
      if (e.isDirectory()) {
        out.set(rel, "dir");
        await walk(p);
      } else if (e.isSymbolicLink()) {
        out.set(rel, `link:${await readlink(p)}`);
      } else if (e.isFile()) {
        out.set(
          rel,
          `file:${createHash("sha256")
            .update(await readFile(p))
            .digest("hex")}`,
        );
      }
    }
  };
  await walk(root);
  return out;
}

/** Drops the page cache so later reads really go to the block devices. */
export async function dropCaches(): Promise<void> {
  await run("sync", []);
  await writeFile("/proc/sys/vm/drop_caches", "3\n");
}

export interface TmpfsDir {
  path: string;
  cleanup(): Promise<void>;
}

/** A directory on its own tmpfs of `sizeMiB` (the agent's state dir in tests). */
export async function makeTmpfsDir(sizeMiB: number, prefix = "protoctl-state-"): Promise<TmpfsDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  await run("mount", ["-t", "tmpfs", "-o", `size=${sizeMiB}m`, "tmpfs", path]);
  return {
    path,
    cleanup: async () => {
      await run("umount", ["-l", path], { allowFailure: true });
      await rm(path, { recursive: true, force: true });
    },
  };
}

export interface TestCa {
  dir: string;
  caFile: string;
  /** Issues a certificate for `cn` valid for `ip`; returns the TLS file paths. */
  issue(cn: string, ip: string): Promise<{ caFile: string; certFile: string; keyFile: string }>;
}

/** A throwaway CA with openssl (P-256), standing in for the cluster CA of common/tls.ts. */
export async function makeTestCa(dir: string): Promise<TestCa> {
  await mkdir(dir, { recursive: true });
  const caKey = join(dir, "ca-key.pem");
  const caFile = join(dir, "ca-cert.pem");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    caKey,
    "-out",
    caFile,
    "-days",
    "2",
    "-subj",
    "/CN=protoctl-test-ca",
  ]);
  return {
    dir,
    caFile,
    issue: async (cn, ip) => {
      const keyFile = join(dir, `${cn}-key.pem`);
      const csr = join(dir, `${cn}.csr`);
      const ext = join(dir, `${cn}.ext`);
      const certFile = join(dir, `${cn}-cert.pem`);
      await run("openssl", ["req", ...ec, "-keyout", keyFile, "-out", csr, "-subj", `/CN=${cn}`]);
      await writeFile(ext, `subjectAltName=IP:${ip}\nextendedKeyUsage=serverAuth,clientAuth\n`);
      await run("openssl", [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        caFile,
        "-CAkey",
        caKey,
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        certFile,
        "-extfile",
        ext,
      ]);
      return { caFile, certFile, keyFile };
    },
  };
}
