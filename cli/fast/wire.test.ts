import { describe, expect, it } from "vitest";
import {
  ControlDeleteEnvRequest,
  CreateEnvRequest,
  VersionInfo,
} from "../../proto/gen/protoctl/v1/control.js";
import { Env, EnvPhase, ExecInput, ExecOutput } from "../../proto/gen/protoctl/v1/types.js";
import { createFlags } from "../../test/support/cli/create-flags.js";
import { envSpecFromFlags } from "../commands/env.js";
import { envPhase } from "../output/columns.js";
import {
  decodeEnvSummary,
  decodeExecOutput,
  decodeVersionInfo,
  encodeCreateEnv,
  encodeDeleteEnv,
  encodeExecStart,
  encodeSignal,
  encodeStdinEof,
  envPhaseLabel,
} from "./wire.js";

describe("hand-encoded messages match the generated code", () => {
  it("ExecInput start, stdin_eof and signal", () => {
    const long = "x".repeat(300); // a two-byte length
    expect(ExecInput.decode(encodeExecStart("demo", ["sh", "-c", long, "", "é"]))).toEqual(
      ExecInput.fromPartial({
        input: { $case: "start", start: { env: "demo", command: ["sh", "-c", long, "", "é"] } },
      }),
    );
    expect(Buffer.from(encodeExecStart("e", ["true"]))).toEqual(
      Buffer.from(
        ExecInput.encode({
          input: {
            $case: "start",
            start: {
              env: "e",
              command: ["true"],
              tty: false,
              envVars: {},
              workdir: "",
              user: "",
              rows: 0,
              cols: 0,
              login: false,
            },
          },
        }).finish(),
      ),
    );
    expect(ExecInput.decode(encodeStdinEof())).toEqual({ input: { $case: "stdinEof", stdinEof: true } });
    expect(ExecInput.decode(encodeSignal("SIGINT"))).toEqual({
      input: { $case: "signal", signal: "SIGINT" },
    });
  });

  it("ExecOutput, negative exit codes and unknown fields included", () => {
    const enc = (o: ExecOutput["output"]) => Buffer.from(ExecOutput.encode({ output: o }).finish());
    expect(decodeExecOutput(enc({ $case: "stdout", stdout: Buffer.from("out") }))).toEqual({
      kind: "stdout",
      data: Buffer.from("out"),
    });
    expect(decodeExecOutput(enc({ $case: "stderr", stderr: Buffer.alloc(70000, 1) }))).toMatchObject({
      kind: "stderr",
    });
    expect(decodeExecOutput(enc({ $case: "startedPid", startedPid: 4_000_000_000 }))).toEqual({
      kind: "startedPid",
      pid: 4_000_000_000,
    });
    for (const code of [0, 7, 137, -1, 2 ** 31 - 1, -(2 ** 31)]) {
      expect(decodeExecOutput(enc({ $case: "exitCode", exitCode: code }))).toEqual({
        kind: "exitCode",
        code,
      });
    }
    // an unknown varint field 9 and length-delimited field 10 before the exit code
    const unknown = Buffer.from([9 << 3, 0x96, 0x01, (10 << 3) | 2, 2, 0x61, 0x62]);
    expect(decodeExecOutput(Buffer.concat([unknown, enc({ $case: "exitCode", exitCode: 3 })]))).toEqual({
      kind: "exitCode",
      code: 3,
    });
    expect(() => decodeExecOutput(Buffer.from([(2 << 3) | 2, 9, 1]))).toThrow(/truncated/);
  });

  it("VersionInfo", () => {
    const v = { version: "1.2.3", controller: "c1", leader: "c2", cluster: "id", consoleUrl: "https://x/" };
    expect(decodeVersionInfo(Buffer.from(VersionInfo.encode(v).finish()))).toEqual({
      version: "1.2.3",
      controller: "c1",
      leader: "c2",
      cluster: "id",
    });
    expect(decodeVersionInfo(Buffer.alloc(0))).toEqual({
      version: "",
      controller: "",
      leader: "",
      cluster: "",
    });
  });

  it("CreateEnvRequest: the full CLI's bytes for `env create NAME --base BASE[@N]`", () => {
    for (const [name, base, version] of [
      ["demo", "busybox", 0],
      ["e-1", "deb", 3],
      ["x".repeat(63), "b".repeat(63), 999_999_999],
    ] as const) {
      const ref = version ? `${base}@${version}` : base;
      const spec = envSpecFromFlags(name, createFlags({ base: ref, network: "none" }));
      const full = CreateEnvRequest.encode({ spec, wait: true, ttlMs: undefined }).finish();
      expect(encodeCreateEnv(name, base, version).toString("hex"), ref).toBe(
        Buffer.from(full).toString("hex"),
      );
    }
  });

  it("ControlDeleteEnvRequest", () => {
    expect(encodeDeleteEnv("demo")).toEqual(
      Buffer.from(ControlDeleteEnvRequest.encode({ name: "demo", wait: true }).finish()),
    );
  });

  it("Env: the status fields `env create` prints, whatever else it holds", () => {
    const spec = envSpecFromFlags(
      "demo",
      createFlags({
        env: ["A=b"],
        network: "private",
        memory: "64M",
      }),
    );
    const env = Env.fromPartial({
      spec,
      status: {
        phase: EnvPhase.ENV_PHASE_RUNNING,
        node: "n1",
        baseVersion: 4_000_000_000,
        leaderPid: 77,
        addresses: ["10.0.0.2"],
        message: "m",
        diskUsedBytes: 5,
      },
    });
    expect(decodeEnvSummary(Buffer.from(Env.encode(env).finish()))).toEqual({
      phase: 4,
      node: "n1",
      baseVersion: 4_000_000_000,
    });
    expect(decodeEnvSummary(Buffer.alloc(0))).toEqual({ phase: 0, node: "", baseVersion: 0 });
  });

  it("phase labels as the full CLI prints them, unknown ones as '-'", () => {
    for (let p = -1; p <= 12; p++) {
      expect(envPhaseLabel(p), String(p)).toBe(envPhase(Env.fromPartial({ status: { phase: p } })));
    }
  });
});
