import { describe, expect, it } from "vitest";
import { VersionInfo } from "../../proto/gen/protoctl/v1/control.js";
import { ExecInput, ExecOutput } from "../../proto/gen/protoctl/v1/types.js";
import {
  decodeExecOutput,
  decodeVersionInfo,
  encodeExecStart,
  encodeSignal,
  encodeStdinEof,
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
});
