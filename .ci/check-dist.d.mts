/** Types for .ci/check-dist.mjs (plain JavaScript: it runs on the build's output). */
export function testFiles(paths: string[]): string[];
export function listFiles(dir: string): string[];
