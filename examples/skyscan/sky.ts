/**
 * Directions on the celestial sphere: unit vectors, equatorial coordinates (RA, Dec in degrees), HEALPix
 * angles (colatitude theta, longitude phi in radians) and the great-circle distance between two directions.
 */

/** A unit vector (x towards RA 0°/Dec 0°, z towards the north celestial pole). */
export type Vec3 = readonly [number, number, number];

/** Equatorial coordinates in degrees: RA in [0, 360), Dec in [−90, 90]. */
export interface RaDec {
  ra: number;
  dec: number;
}

const DEG = Math.PI / 180;

/** HEALPix angles → unit vector. */
export function angToVec(theta: number, phi: number): Vec3 {
  const s = Math.sin(theta);
  return [s * Math.cos(phi), s * Math.sin(phi), Math.cos(theta)];
}

/** Unit vector → HEALPix angles (phi in [0, 2π)). */
export function vecToAng(v: Vec3): { theta: number; phi: number } {
  const [x, y, z] = v;
  const theta = Math.atan2(Math.hypot(x, y), z);
  let phi = Math.atan2(y, x);
  if (phi < 0) phi += 2 * Math.PI;
  return { theta, phi };
}

/** HEALPix angles → RA/Dec in degrees. */
export function angToRaDec(theta: number, phi: number): RaDec {
  let ra = phi / DEG;
  ra = ((ra % 360) + 360) % 360;
  return { ra, dec: 90 - theta / DEG };
}

/** RA/Dec in degrees → HEALPix angles. */
export function raDecToAng({ ra, dec }: RaDec): { theta: number; phi: number } {
  return { theta: (90 - dec) * DEG, phi: ((((ra % 360) + 360) % 360) * DEG) };
}

/** RA/Dec in degrees → unit vector. */
export function raDecToVec(p: RaDec): Vec3 {
  const { theta, phi } = raDecToAng(p);
  return angToVec(theta, phi);
}

/** Unit vector → RA/Dec in degrees. */
export function vecToRaDec(v: Vec3): RaDec {
  const { theta, phi } = vecToAng(v);
  return angToRaDec(theta, phi);
}

/** Dot product. */
export function dot(a: Vec3, b: Vec3): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

/** Great-circle distance in degrees, accurate at small and large separations alike (atan2 form). */
export function angularDistanceDeg(a: Vec3, b: Vec3): number {
  const cx = a[1] * b[2] - a[2] * b[1];
  const cy = a[2] * b[0] - a[0] * b[2];
  const cz = a[0] * b[1] - a[1] * b[0];
  return Math.atan2(Math.hypot(cx, cy, cz), dot(a, b)) / DEG;
}

/** Two unit vectors perpendicular to `v` and to each other, to build directions around `v`. */
export function orthonormalBasis(v: Vec3): [Vec3, Vec3] {
  // Cross with the axis least aligned with v, so the first vector is never near zero length.
  const ax: Vec3 = Math.abs(v[0]) < 0.9 ? [1, 0, 0] : [0, 1, 0];
  let e1: Vec3 = [v[1] * ax[2] - v[2] * ax[1], v[2] * ax[0] - v[0] * ax[2], v[0] * ax[1] - v[1] * ax[0]];
  const n = Math.hypot(...e1);
  e1 = [e1[0] / n, e1[1] / n, e1[2] / n];
  const e2: Vec3 = [v[1] * e1[2] - v[2] * e1[1], v[2] * e1[0] - v[0] * e1[2], v[0] * e1[1] - v[1] * e1[0]];
  return [e1, e2];
}
