import { describe, expect, it } from "vitest";
import { PIECE_BYTES } from "../exports/blake3.js";
import { STATE_HOLE, STATE_ZERO } from "./nbd-client.js";
import { dataRanges, pieceCount, rangesWithin } from "./piece-copy.js";

describe("piece copy helpers", () => {
  it("keeps only data extents of an allocation map, merging neighbours", () => {
    const H = STATE_HOLE | STATE_ZERO;
    expect(
      dataRanges([
        { length: 10, flags: H },
        { length: 5, flags: 0 },
        { length: 5, flags: 0 },
        { length: 3, flags: STATE_ZERO }, // allocated but reads as zeros: not copied
        { length: 7, flags: 0 },
      ]),
    ).toEqual([
      [10, 20],
      [23, 30],
    ]);
    expect(dataRanges([{ length: 8, flags: H }])).toEqual([]);
  });

  it("clips the data ranges to a piece", () => {
    const r: Array<[number, number]> = [
      [10, 20],
      [30, 40],
      [50, 60],
    ];
    expect(rangesWithin(r, 0, 10)).toEqual([]);
    expect(rangesWithin(r, 15, 35)).toEqual([
      [15, 20],
      [30, 35],
    ]);
    expect(rangesWithin(r, 40, 50)).toEqual([]);
    expect(rangesWithin(r, 0, 100)).toEqual(r);
    expect(rangesWithin(r, 55, 56)).toEqual([[55, 56]]);
  });

  it("counts pieces, an empty image having one", () => {
    expect(pieceCount(0)).toBe(1);
    expect(pieceCount(1)).toBe(1);
    expect(pieceCount(PIECE_BYTES)).toBe(1);
    expect(pieceCount(PIECE_BYTES + 1)).toBe(2);
  });
});
