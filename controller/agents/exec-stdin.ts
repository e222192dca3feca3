/**
 * Runs one fixed command in an env through its agent (the lab loop), feeding `stdin` and
 * returning the exit code (output is discarded). Used to rewrite /etc/hosts
 * of kept lab machines: the content travels on stdin, so no user data ever
 * becomes part of a command line.
 */
import { fromServiceError } from "../../common/grpc.js";
import type { AgentServiceClient } from "../../proto/gen/protoctl/v1/agent.js";
import { type ExecOutput, ExecStart } from "../../proto/gen/protoctl/v1/types.js";

export function runWithStdin(
  client: AgentServiceClient,
  env: string,
  command: string[],
  stdin: Buffer,
  timeoutMs = 30_000,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const x = client.exec({ deadline: new Date(Date.now() + timeoutMs) });
    let code: number | undefined;
    x.on("data", (m: ExecOutput) => {
      if (m.output?.$case === "startedPid") {
        x.write({ input: { $case: "stdin", stdin } });
        x.write({ input: { $case: "stdinEof", stdinEof: true } });
        x.end();
      } else if (m.output?.$case === "exitCode") code = m.output.exitCode;
    });
    x.on("error", (err) => reject(fromServiceError(err)));
    x.on("end", () =>
      code === undefined ? reject(new Error("exec ended without an exit code")) : resolve(code),
    );
    x.write({
      input: {
        $case: "start",
        start: ExecStart.fromPartial({ env, command }),
      },
    });
  });
}
