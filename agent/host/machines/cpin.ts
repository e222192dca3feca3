/**
 * The agent's side of protoctl-cpin (enter/cpin.c): one helper per `env cp`
 * into a running env, running with the env root's host ids as fsuid/fsgid,
 * that makes the new files, directories and links the copy writes and
 * renames them into place (the host's root may not create a name on the
 * env's idmapped root or on a tmpfs the env mounted: EOVERFLOW). Requests go one at a time over its
 * stdin, each answered by a line with 0 or an errno.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnDirect } from "../../../common/exec.js";
import type { EntryCreator } from "../../../common/root-access.js";
import type { HeldDir } from "../../../common/root-path.js";
import { errnoName } from "./spawner.js";

export function cpinPath(): string {
  if (process.env.PROTOCTL_ENTER) return join(dirname(process.env.PROTOCTL_ENTER), "protoctl-cpin");
  return fileURLToPath(new URL("./enter/protoctl-cpin", import.meta.url));
}

function errnoError(n: number, what: string): NodeJS.ErrnoException {
  const code = errnoName(n);
  return Object.assign(new Error(`${what}: ${code}`), { code, errno: n });
}

export class CpinCreator implements EntryCreator {
  private readonly child: ChildProcess;
  private readonly waiting: Array<(line: string | Error) => void> = [];
  private buffered = "";
  private chain: Promise<unknown> = Promise.resolve();
  private gone: Error | undefined;

  /** Starts a helper creating as host `uid`:`gid`; throws when the binary is missing. */
  constructor(uid: number, gid: number) {
    const path = cpinPath();
    if (!existsSync(path)) throw new Error(`${path} is missing: run npm run build`);
    this.child = spawnDirect(path, [String(uid), String(gid)], { stdio: ["pipe", "pipe", "pipe"], env: {} });
    let stderr = "";
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (s: string) => {
      stderr += s;
    });
    this.child.stdout!.setEncoding("utf8");
    this.child.stdout!.on("data", (s: string) => {
      this.buffered += s;
      for (let nl = this.buffered.indexOf("\n"); nl >= 0; nl = this.buffered.indexOf("\n")) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        this.waiting.shift()?.(line);
      }
    });
    const fail = (e: Error) => {
      this.gone ??= e;
      for (const w of this.waiting.splice(0)) w(this.gone);
    };
    this.child.on("error", fail);
    this.child.on("exit", (code) => fail(new Error(`protoctl-cpin exited (${code}): ${stderr.trim()}`)));
    this.child.stdin!.on("error", fail);
  }

  file(dir: HeldDir, name: string): Promise<void> {
    return this.request(["f", dir.pathForChild, name], `create ${name}`);
  }

  dir(dir: HeldDir, name: string): Promise<void> {
    return this.request(["d", dir.pathForChild, name], `mkdir ${name}`);
  }

  symlink(target: string, dir: HeldDir, name: string): Promise<void> {
    return this.request(["l", dir.pathForChild, name, target], `symlink ${name}`);
  }

  rename(dir: HeldDir, tmp: string, name: string): Promise<void> {
    return this.request(["r", dir.pathForChild, tmp, name], `rename ${tmp} to ${name}`);
  }

  /** Ends the helper (it exits at EOF) and waits for it. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.stdin!.end();
    await exited;
  }

  private request(words: string[], what: string): Promise<void> {
    for (const w of words) if (w.includes("\0")) throw new Error("protoctl-cpin words cannot hold NUL bytes");
    const next = this.chain.then(
      () =>
        new Promise<void>((resolve, reject) => {
          if (this.gone) return reject(this.gone);
          this.waiting.push((line) => {
            if (line instanceof Error) return reject(line);
            const n = Number(line);
            if (line === "0") resolve();
            else reject(errnoError(Number.isInteger(n) ? n : 22, what));
          });
          this.child.stdin!.write(Buffer.from(words.map((w) => `${w}\0`).join("")));
        }),
    );
    this.chain = next.catch(() => undefined);
    return next;
  }
}
