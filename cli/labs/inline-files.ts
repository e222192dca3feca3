/**
 * Files in a lab spec may point at the client's disk (`source: ./nginx.conf`,
 * relative to the spec file). The controller cannot read those, so the CLI
 * inlines them before sending the spec: each `source:` becomes `content:`
 * (base64) + `encoding: base64`, leaving the rest of the file, comments
 * included, as written. The only I/O is the `read` callback.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from "yaml";
import { invalidArgument, ProtoctlError } from "../../common/errors.js";

/** Reads a `source:` path as written in the spec; the caller resolves it against the spec's directory. */
export type SourceReader = (source: string) => Promise<Uint8Array>;

export async function inlineFileSources(
  text: string,
  read: SourceReader,
  file = "lab.yaml",
): Promise<string> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, keepSourceTokens: true });
  if (doc.errors.length > 0) return text; // the parser reports syntax errors with positions
  const jobs: Array<() => Promise<void>> = [];
  visit(doc, {
    Pair(_, pair) {
      if (!isScalar(pair.key) || pair.key.value !== "files" || !isSeq(pair.value)) return;
      for (const item of pair.value.items) {
        if (!isMap(item)) continue;
        const src = item.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === "source");
        if (!src || !isScalar(src.value) || typeof src.value.value !== "string") continue;
        const source = src.value.value;
        const at = lines.linePos(src.value.range?.[0] ?? 0);
        jobs.push(async () => {
          let bytes: Uint8Array;
          try {
            bytes = await read(source);
          } catch (err) {
            throw invalidArgument(
              `${file}:${at.line}:${at.col}: cannot read file source '${source}': ${ProtoctlError.from(err).message}`,
              {
                reason: "LAB_FILE_SOURCE",
                cause: err,
              },
            );
          }
          item.delete("source");
          item.delete("encoding");
          item.set("content", Buffer.from(bytes).toString("base64"));
          item.set("encoding", "base64");
        });
      }
    },
  });
  if (jobs.length === 0) return text;
  for (const job of jobs) await job();
  return doc.toString({ lineWidth: 0 });
}
