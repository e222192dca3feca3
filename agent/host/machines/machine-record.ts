/**
 * What the agent remembers about each machine, one JSON file per env in
 * `<stateDir>/machines/`, written atomically (temp file + rename) so a killed
 * agent never leaves a torn record. The next agent process re-adopts from it.
 */
import { closeSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { MachineNetwork } from "../interfaces.js";
import type { CgroupSet } from "./cgroups.js";

export interface MachineRecord {
  name: string;
  machine: string;
  rootDir: string;
  boot: boolean;
  env: Record<string, string>;
  network: MachineNetwork;
  cgroups: CgroupSet;
  logFile: string;
  vethHost?: string;
  /** Host sides of every veth (vethHost is the first). */
  vethHosts?: string[];
  nspawnPid?: number;
  /** /proc start time of nspawn, against pid reuse. */
  nspawnStart?: number;
  leaderPid?: number;
  startedMs?: number;
  running: boolean;
  exitCode?: number;
  addresses?: string[];
}

/**
 * Writes a file atomically: temp file in the same dir, then rename. No fsync:
 * rename is atomic against a killed agent, which is what this guards against;
 * surviving power loss is moot when the pool itself is on tmpfs, and an fsync
 * on the start path costs milliseconds on disk-backed state dirs.
 */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, data);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export class RecordStore {
  constructor(readonly dir: string) {}

  path(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  logPath(name: string): string {
    return join(this.dir, `${name}.log`);
  }

  save(rec: MachineRecord): void {
    writeFileAtomic(this.path(rec.name), JSON.stringify(rec));
  }

  remove(name: string): void {
    rmSync(this.path(name), { force: true });
    rmSync(this.logPath(name), { force: true });
  }

  loadAll(): MachineRecord[] {
    const out: MachineRecord[] = [];
    let files: string[] = [];
    try {
      files = readdirSync(this.dir);
    } catch {
      return out;
    }
    for (const f of files) {
      if (f.includes(".tmp-")) {
        rmSync(join(this.dir, f), { force: true });
        continue;
      }
      if (!f.endsWith(".json")) continue;
      try {
        out.push(JSON.parse(readFileSync(join(this.dir, f), "utf8")) as MachineRecord);
      } catch {
        rmSync(join(this.dir, f), { force: true });
      }
    }
    return out;
  }
}
