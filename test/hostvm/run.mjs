#!/usr/bin/env node
// The host VM harness (`npm run test:hostvm`): builds or reuses the cached
// Debian 12 image (build-image.sh), boots it once under QEMU TCG with the
// project shared read-only over 9p, and lets guest/run-checks.sh run every
// check in that one boot (systemd PID 1, pure cgroup v2: what this machine is
// not). Prints each check, exits non-zero if any failed or none ran, and
// always kills QEMU and removes the run's qcow2 overlay.
//
// Needs dist/ built on this host (the guest runs the same build). Env:
// HOSTVM_CACHE (image cache), HOSTVM_ONLY=deploy (see below), HOSTVM_RESULTS (keep results there; default a
// temp dir that is printed), HOSTVM_TIMEOUT_S (default 2400: a hang guard; a loaded 2-core host took 1312 s).
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const timeoutS = Number(process.env.HOSTVM_TIMEOUT_S ?? 2400);
const t0 = Date.now();
const secs = () => ((Date.now() - t0) / 1000).toFixed(1);

if (!existsSync(join(repo, "dist/cli/main.js"))) {
  console.error("hostvm: dist/ is missing; run `npm run build` first (the VM runs this host's build)");
  process.exit(2);
}

// HOSTVM_IMAGE: boot this image dir as is (debugging the checks without a rebuild)
const imageDir =
  process.env.HOSTVM_IMAGE ??
  execFileSync("bash", [join(here, "build-image.sh")], { stdio: ["ignore", "pipe", "inherit"] })
    .toString()
    .trim()
    .split("\n")
    .pop();
console.log(`hostvm: image ${imageDir} ready at ${secs()} s`);

const results = process.env.HOSTVM_RESULTS ?? mkdtempSync(join(tmpdir(), "protoctl-hostvm-results-"));
mkdirSync(results, { recursive: true });
for (const f of ["checks.tsv", "finished", "guest.log", "console.log", "only"])
  rmSync(join(results, f), { force: true });
// HOSTVM_ONLY=deploy: only the host checks and guest/deploy-checks.sh (a quicker boot on a loaded host)
if (process.env.HOSTVM_ONLY) writeFileSync(join(results, "only"), process.env.HOSTVM_ONLY);
const scratch = mkdtempSync(join(tmpdir(), "protoctl-hostvm-run-"));
const overlay = join(scratch, "overlay.qcow2");
execFileSync("qemu-img", [
  "create",
  "-q",
  "-f",
  "qcow2",
  "-F",
  "raw",
  "-b",
  join(imageDir, "rootfs.img"),
  overlay,
]);

const args = [
  ...["-accel", "tcg", "-cpu", "qemu64", "-smp", "1", "-m", "2048", "-machine", "q35"],
  ...["-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none"],
  ...["-serial", `file:${join(results, "console.log")}`],
  ...["-kernel", join(imageDir, "vmlinux"), "-initrd", join(imageDir, "initrd")],
  ...["-append", "console=ttyS0 quiet mitigations=off panic=-1 systemd.show_status=0 no_timer_check"],
  ...["-drive", `file=${overlay},if=virtio,format=qcow2,cache=unsafe`],
  ...["-virtfs", `local,path=${repo},mount_tag=project,security_model=none,readonly=on`],
  ...["-virtfs", `local,path=${results},mount_tag=results,security_model=passthrough`],
];
const qemu = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "inherit", "inherit"] });
let exited = false;
const cleanup = () => {
  if (!exited && qemu.pid) {
    try {
      process.kill(qemu.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  rmSync(scratch, { recursive: true, force: true });
};
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

const status = await new Promise((done) => {
  const timer = setTimeout(() => {
    console.error(`hostvm: no power-off after ${timeoutS} s; killing QEMU`);
    done("timeout");
  }, timeoutS * 1000);
  qemu.on("exit", (code, signal) => {
    exited = true;
    clearTimeout(timer);
    done(code === 0 ? "ok" : `qemu exit ${code ?? signal}`);
  });
  qemu.on("error", (err) => {
    clearTimeout(timer);
    done(`qemu: ${err.message}`);
  });
});
cleanup();
console.log(`hostvm: VM done (${status}) at ${secs()} s; results in ${results}`);

const tsv = existsSync(join(results, "checks.tsv")) ? readFileSync(join(results, "checks.tsv"), "utf8") : "";
const rows = tsv
  .split("\n")
  .filter((l) => l)
  .map((l) => l.split("\t"));
for (const [verdict, name = "", detail = ""] of rows)
  console.log(`${verdict.padEnd(5)} ${name.padEnd(22)} ${detail}`);
const failed = rows.filter((r) => r[0] === "FAIL").length;
const passed = rows.filter((r) => r[0] === "PASS").length;
const finished = existsSync(join(results, "finished"));
console.log(
  `hostvm: ${passed} passed, ${failed} failed${finished ? "" : ", checks did not finish"} in ${secs()} s`,
);
if (!finished || failed > 0 || passed === 0 || status !== "ok") {
  const log = join(results, finished ? "guest.log" : "console.log");
  if (existsSync(log))
    console.log(`--- tail of ${log}\n${readFileSync(log, "utf8").split("\n").slice(-40).join("\n")}`);
  process.exit(1);
}
// A passing run's results are not needed again; a failing one's stay for a look (path printed above).
if (!process.env.HOSTVM_RESULTS) rmSync(results, { recursive: true, force: true });
