/**
 * Entry point running `protoctl agent` alone in its own process (tests kill
 * it with SIGKILL; the bench runs against it): `node <bundle> --flags…`.
 */
import { agentCommand } from "../../../agent/main.js";

await agentCommand().parseAsync(process.argv);
