/**
 * HEALPix nested scheme checked against values derived by hand from the geometry (Górski et al. 2005):
 * ring latitudes and pixel counts, the 12 base pixels, nside 2 corners, round trips, the nested hierarchy,
 * and equal areas by Monte Carlo.
 */
import { describe, expect, test } from 'vitest';
import {
  InvalidNsideError,
  InvalidPixelError,
  ang2pixNest,
  childrenNest,
  nside2npix,
  nside2order,
  parentNest,
  pix2angNest,
  pixelArea,
} from '../../examples/skyscan/healpix.js';
import { seededRandom } from '../../examples/skyscan/likelihood.js';
import { pixelRadiusBoundDeg } from '../../examples/skyscan/scan.js';
import { angToVec, angularDistanceDeg } from '../../examples/skyscan/sky.js';

const DEG = 180 / Math.PI;

/** Uniform random (theta, phi) on the sphere. */
function randomAngles(random: () => number): { theta: number; phi: number } {
  return { theta: Math.acos(2 * random() - 1), phi: 2 * Math.PI * random() };
}

describe('resolution', () => {
  test('npix is 12·nside² and the order is log2(nside)', () => {
    expect(nside2npix(1)).toBe(12);
    expect(nside2npix(8)).toBe(768);
    expect(nside2npix(64)).toBe(49_152);
    expect(nside2order(64)).toBe(6);
    expect(pixelArea(8) * 768).toBeCloseTo(4 * Math.PI, 12);
  });

  test('nside that is not a power of two, or a pixel out of range, is refused with a hint', () => {
    expect(() => nside2npix(3)).toThrow(InvalidNsideError);
    expect(() => nside2npix(0)).toThrow(InvalidNsideError);
    expect(() => pix2angNest(2, 48)).toThrow(InvalidPixelError);
    expect(() => pix2angNest(2, -1)).toThrow(InvalidPixelError);
    try {
      pix2angNest(2, 48);
    } catch (err) {
      expect((err as InvalidPixelError).hint).toContain('0 to 47');
    }
  });
});

describe('pix2angNest', () => {
  test('nside 1: the 12 base pixels sit at z = 2/3, 0, −2/3 on the expected longitudes', () => {
    const expected = [
      ...[45, 135, 225, 315].map((phi) => ({ z: 2 / 3, phi })),
      ...[0, 90, 180, 270].map((phi) => ({ z: 0, phi })),
      ...[45, 135, 225, 315].map((phi) => ({ z: -2 / 3, phi })),
    ];
    for (const [pix, want] of expected.entries()) {
      const { theta, phi } = pix2angNest(1, pix);
      expect(Math.cos(theta)).toBeCloseTo(want.z, 12);
      expect(phi * DEG).toBeCloseTo(want.phi, 10);
    }
  });

  test('nside 2: corners of base pixel 0 and the first equatorial pixel', () => {
    // Pixel 3 is the north corner of face 0 (x = y = 1): first ring, z = 1 − 1/(3·2²) = 11/12, phi = 45°.
    const north = pix2angNest(2, 3);
    expect(Math.cos(north.theta)).toBeCloseTo(11 / 12, 12);
    expect(north.phi * DEG).toBeCloseTo(45, 10);
    // Pixel 0 is the south corner of face 0: ring 3, z = 1/3, phi = 45°.
    const south = pix2angNest(2, 0);
    expect(Math.cos(south.theta)).toBeCloseTo(1 / 3, 12);
    expect(south.phi * DEG).toBeCloseTo(45, 10);
    // Pixels 1 and 2 are the east/west corners of face 0: ring 2, z = 2/3, phi = 22.5° and 67.5°.
    const sides = [pix2angNest(2, 1), pix2angNest(2, 2)].map((a) => ({ z: Math.cos(a.theta), phi: a.phi * DEG }));
    for (const s of sides) expect(s.z).toBeCloseTo(2 / 3, 12);
    expect(sides.map((s) => s.phi).sort((a, b) => a - b)).toEqual([expect.closeTo(22.5, 9), expect.closeTo(67.5, 9)]);
    // Pixel 16 is the south corner of face 4 (centred on phi = 0): ring 5, z = −1/3, phi = 0.
    const eq = pix2angNest(2, 16);
    expect(Math.cos(eq.theta)).toBeCloseTo(-1 / 3, 12);
    expect(eq.phi * DEG).toBeCloseTo(0, 10);
  });

  test('nside 8: centres lie on 4·nside − 1 rings with the HEALPix counts, latitudes and longitudes', () => {
    const nside = 8;
    const rings = new Map<string, number[]>();
    for (let pix = 0; pix < nside2npix(nside); pix++) {
      const { theta, phi } = pix2angNest(nside, pix);
      const key = Math.cos(theta).toFixed(9);
      rings.set(key, [...(rings.get(key) ?? []), phi * DEG]);
    }
    expect(rings.size).toBe(4 * nside - 1);
    for (let i = 1; i < 4 * nside; i++) {
      // Ring i from the north: polar rings have z = 1 − i²/(3·nside²) and 4i pixels; equatorial ones
      // z = 4/3 − 2i/(3·nside) and 4·nside pixels, every other one shifted by half a pixel.
      const polar = Math.min(i, 4 * nside - i);
      const z =
        i < nside ? 1 - (i * i) / (3 * nside * nside) : i > 3 * nside ? (polar * polar) / (3 * nside * nside) - 1 : 4 / 3 - (2 * i) / (3 * nside);
      const phis = (rings.get(z.toFixed(9)) ?? []).sort((a, b) => a - b);
      const count = i < nside || i > 3 * nside ? 4 * polar : 4 * nside;
      expect(phis.length, `ring ${i}`).toBe(count);
      const step = 360 / count;
      const shifted = i < nside || i > 3 * nside || (i - nside) % 2 === 0;
      phis.forEach((phi, k) => expect(phi).toBeCloseTo((k + (shifted ? 0.5 : 0)) * step, 9));
    }
  });

  test('all pixel centres are distinct (nside 16)', () => {
    const keys = new Set<string>();
    for (let pix = 0; pix < nside2npix(16); pix++) {
      const { theta, phi } = pix2angNest(16, pix);
      keys.add(`${theta.toFixed(10)},${phi.toFixed(10)}`);
    }
    expect(keys.size).toBe(nside2npix(16));
  });
});

describe('ang2pixNest and the hierarchy', () => {
  test('every pixel centre maps back to its own pixel (nside 1 … 64)', () => {
    for (const nside of [1, 2, 4, 8, 16, 32, 64]) {
      for (let pix = 0; pix < nside2npix(nside); pix++) {
        const { theta, phi } = pix2angNest(nside, pix);
        if (ang2pixNest(nside, theta, phi) !== pix) throw new Error(`nside ${nside}: pixel ${pix} does not round-trip`);
      }
    }
  });

  test('the children of p are 4p … 4p+3 and lie inside p; the parent inverts it', () => {
    expect(childrenNest(8, 5, 16)).toEqual([20, 21, 22, 23]);
    expect(childrenNest(8, 5, 64)).toHaveLength(64);
    expect(childrenNest(8, 5, 64)[0]).toBe(5 * 64);
    for (let pix = 0; pix < nside2npix(8); pix++) {
      for (const child of childrenNest(8, pix, 32)) {
        const { theta, phi } = pix2angNest(32, child);
        expect(ang2pixNest(8, theta, phi)).toBe(pix);
        expect(parentNest(32, child, 8)).toBe(pix);
      }
    }
  });

  test('pixels have equal areas: uniform points fill them evenly (χ² test, nside 4)', () => {
    const nside = 4;
    const npix = nside2npix(nside);
    const n = 192_000;
    const counts = new Array<number>(npix).fill(0);
    const random = seededRandom(7);
    for (let i = 0; i < n; i++) {
      const { theta, phi } = randomAngles(random);
      const pix = ang2pixNest(nside, theta, phi);
      counts[pix] = (counts[pix] ?? 0) + 1;
    }
    const expected = n / npix;
    const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    // 191 degrees of freedom: mean 191, sd ≈ 19.5; 300 is beyond 5 sd, unequal areas blow far past it.
    expect(chi2).toBeLessThan(300);
    expect(Math.min(...counts)).toBeGreaterThan(expected * 0.85);
  });

  test('a point is never farther from its pixel centre than pixelRadiusBoundDeg', () => {
    const random = seededRandom(11);
    for (const nside of [1, 8, 64]) {
      let worst = 0;
      for (let i = 0; i < 20_000; i++) {
        const { theta, phi } = randomAngles(random);
        const c = pix2angNest(nside, ang2pixNest(nside, theta, phi));
        worst = Math.max(worst, angularDistanceDeg(angToVec(theta, phi), angToVec(c.theta, c.phi)));
      }
      expect(worst).toBeLessThan(pixelRadiusBoundDeg(nside));
      // …and the bound is not wildly loose.
      expect(worst).toBeGreaterThan(pixelRadiusBoundDeg(nside) * 0.6);
    }
  });
});
