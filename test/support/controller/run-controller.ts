/**
 * Entry for a controller in its own process (HA tests, bench):
 *   node --import ./test/support/register.mjs test/support/controller/run-controller.ts '<config json>'
 * The argument is a partial ControllerConfig. Prints one line
 * `READY {"address":…,"id":…}` on stdout when serving; stops on SIGTERM.
 */
import { createLogger, silentLogger } from "../../../common/logger.js";
import { controllerConfig } from "../../../controller/config.js";
import { startController } from "../../../controller/controller.js";

const over = JSON.parse(process.argv[2] ?? "{}");
const cfg = controllerConfig(over);
const log = process.env.PROTOCTL_TEST_LOG
  ? createLogger({ name: "controller", level: process.env.PROTOCTL_TEST_LOG, format: "json" })
  : silentLogger();
const c = await startController(cfg, log);
process.stdout.write(`READY ${JSON.stringify({ address: c.address, id: c.id, pid: process.pid })}\n`);
const stop = async () => {
  await c.stop();
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
process.once("SIGINT", () => void stop());
