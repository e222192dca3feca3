#!/usr/bin/env bash
# Fails when proto/gen is not what `npm run gen` makes from proto/.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -a proto/gen "$tmp/before"
npm run -s gen >/dev/null
if ! diff -r "$tmp/before" proto/gen >/dev/null; then
  diff -r "$tmp/before" proto/gen | head -40
  echo "proto/gen is stale: run 'npm run gen' and commit the result" >&2
  exit 1
fi
echo "generated code is current"
