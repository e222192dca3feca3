// Writes the uncompressed ELF kernel held in a bzImage (vmlinuz): QEMU boots
// it directly (PVH entry), skipping the decompression that is slow under TCG.
// Finds each compressed-stream signature and keeps the first that decompresses
// into an ELF file.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const [src, dst] = process.argv.slice(2);
if (!src || !dst) throw new Error("usage: extract-vmlinux.mjs VMLINUZ OUT");
const img = readFileSync(src);
const formats = [
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), cmd: ["xz", "-dc"] },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), cmd: ["zstd", "-dcq"] },
  { magic: Buffer.from([0x1f, 0x8b, 0x08]), cmd: ["gzip", "-dc"] },
];
for (const f of formats) {
  for (let at = img.indexOf(f.magic); at >= 0; at = img.indexOf(f.magic, at + 1)) {
    // trailing bytes after the stream make the tools complain: the output still counts
    const r = spawnSync(f.cmd[0], f.cmd.slice(1), { input: img.subarray(at), maxBuffer: 1 << 30 });
    const out = r.stdout;
    if (out && out.length > 4 && out.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
      writeFileSync(dst, out);
      process.exit(0);
    }
  }
}
throw new Error(`no compressed ELF kernel found in ${src}`);
