/**
 * The agent's record of each env: `<stateDir>/envs/NAME.json`, written
 * atomically, and only once the env is complete (root prepared, files
 * written, machine started when asked): an env without a record is half-made,
 * and the startup inventory removes whatever it left.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { EnvSpec } from "../../proto/gen/protoctl/v1/types.js";
import { writeFileAtomic } from "../host/machines/machine-record.js";

export type StoredPhase = "created" | "running" | "stopped" | "failed";

export interface EnvRecord {
  spec: EnvSpec;
  phase: StoredPhase;
  message: string;
  createdMs: number;
  startedMs: number;
  baseVersion: number;
  generation: number;
  rootDir: string;
}

export class EnvStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, "envs");
    mkdirSync(this.dir, { recursive: true });
  }

  save(rec: EnvRecord): void {
    writeFileAtomic(
      join(this.dir, `${rec.spec.name}.json`),
      JSON.stringify({ ...rec, spec: EnvSpec.toJSON(rec.spec) }),
    );
  }

  remove(name: string): void {
    rmSync(join(this.dir, `${name}.json`), { force: true });
  }

  loadAll(): EnvRecord[] {
    const out: EnvRecord[] = [];
    for (const f of readdirSync(this.dir)) {
      const p = join(this.dir, f);
      if (f.includes(".tmp-")) {
        rmSync(p, { force: true });
        continue;
      }
      if (!f.endsWith(".json")) continue;
      try {
        const raw = JSON.parse(readFileSync(p, "utf8")) as EnvRecord & { spec: unknown };
        out.push({ ...raw, spec: EnvSpec.fromJSON(raw.spec) });
      } catch {
        rmSync(p, { force: true });
      }
    }
    return out;
  }
}
