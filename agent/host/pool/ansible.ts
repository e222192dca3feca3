/**
 * Runs an Ansible playbook against a directory tree. ansible-core ships no
 * chroot connection (that one lives in community.general, not installed
 * here), so the agent brings a tiny connection plugin that runs each command
 * with `systemd-nspawn --pipe` on the tree: the tasks see /proc, /dev and
 * the host network like a real machine, and nothing is installed on the host
 * beyond ansible-core. Pipelining is on, so a task costs one nspawn start.
 * The playbook runs on the host from the recipe dir staged inside the tree
 * and should target `hosts: all`.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runWithProgress } from "../../../common/progress-run.js";
import type { ProgressFn } from "../interfaces.js";

const PLUGIN = `# protoctl: run Ansible tasks in a directory tree through systemd-nspawn
from __future__ import annotations
import os
import subprocess

from ansible.plugins.connection import ConnectionBase

# the agent's bind mounts for every task (the node's package cache), one "HOST:CONTAINER" a line
BINDS = ["--bind=" + b for b in os.environ.get("PROTOCTL_NSPAWN_BINDS", "").splitlines() if b]

DOCUMENTATION = """
name: protoctl_nspawn
short_description: Run tasks in a directory tree with systemd-nspawn --pipe
description:
  - The inventory host name is the path of the root directory.
author: protoctl
options: {}
"""


class Connection(ConnectionBase):
    transport = "protoctl_nspawn"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.root = self._play_context.remote_addr

    def _connect(self):
        self._connected = True
        return self

    def _run(self, argv, stdin=None):
        name = "pa-" + os.urandom(5).hex()
        cmd = ["systemd-nspawn", "--register=no", "--keep-unit", "-q", "--pipe", "--machine=" + name,
               "-D", self.root, "--resolv-conf=bind-host", "--timezone=off", "--link-journal=no",
               "--setenv=DEBIAN_FRONTEND=noninteractive"] + BINDS + ["--"] + argv
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(stdin or b"")
        return p.returncode, out, err

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        return self._run(["/bin/sh", "-c", cmd], in_data)

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as f:
            data = f.read()
        rc, out, err = self._run(["/bin/sh", "-c", 'cat > "$1"', "sh", out_path], data)
        if rc != 0:
            raise OSError("put_file %s failed: %s" % (out_path, err.decode(errors="replace")))

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        rc, out, err = self._run(["/bin/cat", in_path])
        if rc != 0:
            raise OSError("fetch_file %s failed: %s" % (in_path, err.decode(errors="replace")))
        with open(out_path, "wb") as f:
            f.write(out)

    def close(self):
        self._connected = False
`;

/**
 * True when the playbook has a `raw` task (pure): Ansible's own way to
 * bootstrap a host without python3 (`raw` runs a command through the
 * connection, no module, no interpreter), so such a playbook runs on a base
 * without python3; facts are gathered only when a play asks
 * (ANSIBLE_GATHERING=explicit below), and that play must come after the bootstrap.
 */
export function usesRawTasks(playbook: string): boolean {
  return /^\s*(-\s+)?(ansible\.builtin\.)?raw\s*:/m.test(playbook);
}

/** The fix named in the error for an Ansible layer on a base without python3. */
export const PYTHON_BOOTSTRAP_HINT =
  "build the base with python3 (`base build --debootstrap bookworm --include python3`), or start the playbook with Ansible's bootstrap: a play with `gather_facts: false` and the task `raw: apt-get update && apt-get install -y python3`";

export async function runAnsible(
  root: string,
  stageName: string,
  playbook: string,
  opts: {
    /**
     * The tree's python3 when known ("/usr/bin/python3"): Ansible's interpreter discovery
     * then runs no commands in the tree (two nspawn starts per build, measured ~1-2 s).
     */
    interpreter?: string;
    /** Bind mounts for every task's nspawn run (paths the agent made, never user input). */
    binds?: Array<{ host: string; container: string }>;
    progress?: ProgressFn;
    signal?: AbortSignal;
  },
): Promise<{ exitCode: number; output: string; noSpace: boolean }> {
  const scratch = await mkdtemp(join(tmpdir(), "protoctl-ansible-"));
  try {
    const plugins = join(scratch, "connection_plugins");
    await mkdir(plugins);
    await writeFile(join(plugins, "protoctl_nspawn.py"), PLUGIN);
    return await runWithProgress(
      "ansible-playbook",
      [
        "-i",
        `${root},`,
        "-c",
        "protoctl_nspawn",
        "-e",
        `ansible_python_interpreter=${opts.interpreter ?? "auto_silent"}`,
        join(root, stageName, playbook),
      ],
      {
        cwd: join(root, stageName),
        env: {
          ANSIBLE_CONNECTION_PLUGINS: plugins,
          ANSIBLE_PIPELINING: "True",
          // Remote temp files live in the recipe dir, which leaves the upper after the run.
          ANSIBLE_REMOTE_TMP: `/${stageName}/.ansible-tmp`,
          ANSIBLE_LOCAL_TEMP: join(scratch, "local"),
          ANSIBLE_HOME: join(scratch, "home"),
          ANSIBLE_NOCOLOR: "1",
          ANSIBLE_RETRY_FILES_ENABLED: "False",
          ANSIBLE_HOST_KEY_CHECKING: "False",
          ANSIBLE_GATHERING: "explicit",
          PROTOCTL_NSPAWN_BINDS: (opts.binds ?? []).map((b) => `${b.host}:${b.container}`).join("\n"),
        },
        signal: opts.signal,
        onLines: (log) => opts.progress?.({ step: "ansible", log }),
      },
    );
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
