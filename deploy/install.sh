#!/usr/bin/env bash
# Newcomer set-up, from a clone, as root:  sudo bash deploy/install.sh
# Installs the Debian packages and kernel modules protoctl needs (the same list CI uses),
# the npm dependencies from the lock file, builds to dist/, and links
# /usr/local/bin/protoctl to the build. Safe to run again after a pull.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [[ $(id -u) != 0 ]]; then
  echo "deploy/install.sh needs root: sudo bash deploy/install.sh" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 20)); then
  echo "protoctl needs Node.js >= 20 (found: $(node --version 2>/dev/null || echo none)); install it, then rerun" >&2
  exit 1
fi

echo "==> system packages and kernel modules"
bash .ci/install-system.sh
# Load the modules at boot too (ignored where they are built in).
if [[ -d /etc/modules-load.d ]]; then
  printf '%s\n' btrfs overlay loop fuse vxlan bridge veth >/etc/modules-load.d/protoctl.conf
fi

echo "==> npm dependencies"
npm ci --no-audit --no-fund

echo "==> build"
npm run -s build

echo "==> /usr/local/bin/protoctl -> $repo/dist/cli/main.js"
ln -sfn "$repo/dist/cli/main.js" /usr/local/bin/protoctl

echo "protoctl is installed. Next: protoctl doctor"
