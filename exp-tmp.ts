import { join } from "node:path";
import { connectNbd } from "./agent/host/attachments/nbd-transport.js";
import { serveImage } from "./agent/host/exports/nbd-server.js";
import { makeTestCa, makeTmpfsDir } from "./agent/host/exports/test-support.js";
import { makeTlsDir } from "./agent/host/exports/tls-dir.js";
import { run } from "./common/exec.js";

const d = await makeTmpfsDir(512);
try {
  await run("truncate", ["-s", "300M", join(d.path, "img")]);
  const ca = await makeTestCa(join(d.path, "ca"));
  const st = await ca.issue("s", "127.0.0.1");
  const cl = await ca.issue("c", "127.0.0.1");
  const exp = await serveImage({
    image: join(d.path, "img"),
    exportName: "x",
    bindAddress: "127.0.0.1",
    stateDir: join(d.path, "e"),
    tls: st,
  });
  const tlsDir = await makeTlsDir(join(d.path, "tlsc"), cl, "client");
  for (let i = 0; i < 4; i++) {
    const t = performance.now();
    await run("nbdinfo", [
      "--size",
      exp.uri.replace("nbds://", "nbds://") + `?tls-certificates=${tlsDir}`,
    ]).catch((e) => console.log(String(e).slice(0, 200)));
    console.log("nbdinfo tls", (performance.now() - t).toFixed(1));
  }
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const c = await connectNbd({
      uri: exp.uri,
      tlsDir,
      dir: join(d.path, `n${i}`),
      connections: 4,
      sizeBytes: 300 * 1024 * 1024,
      kind: "nbdfuse",
      tls: cl,
    });
    console.log("connectNbd", (performance.now() - t).toFixed(1));
    await c.close();
  }
  await exp.stop();
} finally {
  await d.cleanup();
}
