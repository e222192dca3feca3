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
