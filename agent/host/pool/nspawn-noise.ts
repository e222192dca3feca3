/**
 * Lines systemd-nspawn prints that are harmless but read like errors to a
 * user (issue 17 item 4). nspawn 252 says, on every run with `--pipe`
 * against a tree without /run/systemd/nspawn/propagate:
 *
 *   Attempted to remove disk file system under "/run/systemd/nspawn/propagate/pb-…", and we can't allow that.
 *
 * It is its cleanup refusing to rm -rf a path on another file system; the
 * command's result is unaffected. Such lines stay in the run's captured
 * output (errors quote it) but are not streamed to the user.
 */
const NOISE = [
  /^Attempted to remove disk file system under "\/run\/systemd\/nspawn\/propagate\/[^"]*", and we can't allow that\.\s*$/,
];

export function isNspawnNoise(line: string): boolean {
  return NOISE.some((re) => re.test(line));
}

/**
 * Splits a stream of chunks into lines and passes on what is not noise,
 * whole lines at a time (a line split across chunks is judged whole).
 * `flush` passes on a last line without its newline.
 */
export function noiseFilter(emit: (text: string) => void): { write(chunk: string): void; flush(): void } {
  let partial = "";
  return {
    write(chunk: string) {
      const text = partial + chunk;
      const end = text.lastIndexOf("\n");
      if (end < 0) {
        partial = text;
        return;
      }
      partial = text.slice(end + 1);
      const kept = text
        .slice(0, end + 1)
        .split(/(?<=\n)/)
        .filter((l) => !isNspawnNoise(l));
      if (kept.length > 0) emit(kept.join(""));
    },
    flush() {
      if (partial && !isNspawnNoise(partial)) emit(partial);
      partial = "";
    },
  };
}
