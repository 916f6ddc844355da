/**
 * HEALPix in the NESTED numbering scheme, just what a sky scan needs: pixel counts, pixel centres
 * (`pix2angNest`), the pixel holding a direction (`ang2pixNest`), and the children of a pixel at a finer
 * resolution.
 *
 * The algorithms follow Górski et al. 2005, ApJ 622, 759 ("HEALPix: a framework for high-resolution
 * discretization and fast analysis of data distributed on the sphere"), sections 4–5, in the integer form
 * the reference implementations use: the sphere is cut into 12 base faces (4 around each pole, 4 on the
 * equator); each face is an `nside × nside` grid whose cells are numbered by interleaving the bits of their
 * (x, y) indices. That bit interleaving is why the nested scheme is hierarchical: the children of pixel `p`
 * one level down are `4p … 4p+3`.
 *
 * Angles: `theta` is the colatitude in radians (0 at the north pole, π at the south pole), `phi` the
 * longitude in radians in [0, 2π). On the celestial sphere, RA = phi and Dec = π/2 − theta.
 */

import { EwmsError } from '../../common/errors.js';

/** Largest nside supported: keeps every pixel index a safe integer and every bit operation in 32 bits. */
export const MAX_NSIDE = 1 << 13;

/** The face each base pixel sits on, as ring row (`JRLL`) and longitude offset (`JPLL`, in units of π/4). */
const JRLL = [2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4] as const;
const JPLL = [1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7] as const;

const HALF_PI = Math.PI / 2;
const TWO_PI = 2 * Math.PI;

/** A HEALPix resolution that is not a power of two in [1, MAX_NSIDE]. */
export class InvalidNsideError extends EwmsError {
  constructor(nside: number) {
    super(`nside must be a power of two between 1 and ${MAX_NSIDE}, got ${nside}`, 'use 1, 2, 4, 8, 16, 32, 64, …');
  }
}

/** A pixel index outside [0, 12·nside²). */
export class InvalidPixelError extends EwmsError {
  constructor(nside: number, pix: number) {
    super(
      `pixel ${pix} does not exist at nside ${nside}`,
      `nested pixel indices at nside ${nside} run from 0 to ${nside2npix(nside) - 1}`,
    );
  }
}

/** Any other argument a HEALPix function cannot work with (a direction off the sphere, levels in the wrong order). */
export class HealpixArgumentError extends EwmsError {}

/** Is `nside` a valid resolution (a power of two in [1, MAX_NSIDE])? */
export function isValidNside(nside: number): boolean {
  return Number.isInteger(nside) && nside >= 1 && nside <= MAX_NSIDE && (nside & (nside - 1)) === 0;
}

function checkNside(nside: number): void {
  if (!isValidNside(nside)) throw new InvalidNsideError(nside);
}

/** log2(nside): the depth of the nested hierarchy. */
export function nside2order(nside: number): number {
  checkNside(nside);
  return Math.round(Math.log2(nside));
}

/** Number of pixels on the sphere: 12·nside². */
export function nside2npix(nside: number): number {
  checkNside(nside);
  return 12 * nside * nside;
}

/** Solid angle of one pixel in steradians: 4π / npix (all pixels have the same area). */
export function pixelArea(nside: number): number {
  return (4 * Math.PI) / nside2npix(nside);
}

/** Take every other bit of `v` (bits 0, 2, 4, …) and pack them together. */
function compressBits(v: number): number {
  let x = v & 0x55555555;
  x = (x | (x >>> 1)) & 0x33333333;
  x = (x | (x >>> 2)) & 0x0f0f0f0f;
  x = (x | (x >>> 4)) & 0x00ff00ff;
  x = (x | (x >>> 8)) & 0x0000ffff;
  return x;
}

/** The inverse of `compressBits`: spread the bits of `v` onto the even bit positions. */
function spreadBits(v: number): number {
  let x = v & 0x0000ffff;
  x = (x | (x << 8)) & 0x00ff00ff;
  x = (x | (x << 4)) & 0x0f0f0f0f;
  x = (x | (x << 2)) & 0x33333333;
  x = (x | (x << 1)) & 0x55555555;
  return x;
}

/** The centre of nested pixel `pix` at resolution `nside`, as (theta, phi) in radians. */
export function pix2angNest(nside: number, pix: number): { theta: number; phi: number } {
  const npix = nside2npix(nside);
  if (!Number.isInteger(pix) || pix < 0 || pix >= npix) throw new InvalidPixelError(nside, pix);
  const npface = nside * nside;
  const face = Math.floor(pix / npface);
  const inFace = pix - face * npface;
  const ix = compressBits(inFace);
  const iy = compressBits(inFace >>> 1);

  // Ring index counted from the north pole (1 .. 4·nside−1) and the position along that ring.
  const jr = (JRLL[face] as number) * nside - ix - iy - 1;
  const fact2 = 4 / npix;
  let z: number;
  let nr: number; // pixels per quarter of this ring
  let kshift: number; // equatorial rings alternate between starting at phi = 0 and half a pixel later
  if (jr < nside) {
    nr = jr;
    z = 1 - nr * nr * fact2;
    kshift = 0;
  } else if (jr > 3 * nside) {
    nr = 4 * nside - jr;
    z = nr * nr * fact2 - 1;
    kshift = 0;
  } else {
    nr = nside;
    z = ((2 * nside - jr) * 2) / (3 * nside);
    kshift = (jr - nside) & 1;
  }
  let jp = ((JPLL[face] as number) * nr + ix - iy + 1 + kshift) / 2;
  if (jp > 4 * nr) jp -= 4 * nr;
  if (jp < 1) jp += 4 * nr;
  const phi = (jp - (kshift + 1) * 0.5) * (HALF_PI / nr);
  return { theta: Math.acos(Math.max(-1, Math.min(1, z))), phi };
}

/** The nested pixel at resolution `nside` that contains the direction (theta, phi). */
export function ang2pixNest(nside: number, theta: number, phi: number): number {
  checkNside(nside);
  if (!(theta >= 0 && theta <= Math.PI) || !Number.isFinite(phi)) {
    throw new HealpixArgumentError(
      `direction out of range: theta=${theta}, phi=${phi}`,
      'theta is the colatitude in radians, in [0, π]; phi a finite longitude in radians',
    );
  }
  const z = Math.cos(theta);
  const za = Math.abs(z);
  let tt = (((phi % TWO_PI) + TWO_PI) % TWO_PI) / HALF_PI; // in [0, 4)
  if (tt >= 4) tt = 0;
  let face: number;
  let ix: number;
  let iy: number;
  if (za <= 2 / 3) {
    // Equatorial zone: the two families of pixel edges are straight lines in (phi, z).
    const temp1 = nside * (0.5 + tt);
    const temp2 = nside * z * 0.75;
    const jp = Math.floor(temp1 - temp2); // index of the ascending edge line
    const jm = Math.floor(temp1 + temp2); // index of the descending edge line
    const ifp = Math.floor(jp / nside);
    const ifm = Math.floor(jm / nside);
    face = ifp === ifm ? (ifp % 4) + 4 : ifp < ifm ? ifp % 4 : (ifm % 4) + 8;
    ix = jm & (nside - 1);
    iy = nside - (jp & (nside - 1)) - 1;
  } else {
    // Polar caps: the edges are curves of constant nside·sqrt(3(1−|z|))·(tp or 1−tp).
    let ntt = Math.floor(tt);
    if (ntt >= 4) ntt = 3;
    const tp = tt - ntt;
    const tmp = nside * Math.sqrt(3 * (1 - za));
    const jp = Math.min(Math.floor(tp * tmp), nside - 1);
    const jm = Math.min(Math.floor((1 - tp) * tmp), nside - 1);
    if (z >= 0) {
      face = ntt;
      ix = nside - jm - 1;
      iy = nside - jp - 1;
    } else {
      face = ntt + 8;
      ix = jp;
      iy = jm;
    }
  }
  return face * nside * nside + (spreadBits(ix) | (spreadBits(iy) << 1));
}

/**
 * The pixels at the finer resolution `childNside` that make up pixel `pix` at `nside`: in the nested
 * scheme they are the contiguous range `pix·4^k … pix·4^k + 4^k − 1` with `4^k = (childNside/nside)²`.
 */
export function childrenNest(nside: number, pix: number, childNside: number): number[] {
  checkNside(nside);
  checkNside(childNside);
  if (childNside < nside) throw new HealpixArgumentError(`childNside ${childNside} is coarser than nside ${nside}`, 'children live at a finer (larger) nside');
  if (!Number.isInteger(pix) || pix < 0 || pix >= nside2npix(nside)) throw new InvalidPixelError(nside, pix);
  const factor = (childNside / nside) ** 2;
  return Array.from({ length: factor }, (_, i) => pix * factor + i);
}

/** The pixel at the coarser resolution `parentNside` that contains nested pixel `pix` at `nside`. */
export function parentNest(nside: number, pix: number, parentNside: number): number {
  checkNside(nside);
  checkNside(parentNside);
  if (parentNside > nside) throw new HealpixArgumentError(`parentNside ${parentNside} is finer than nside ${nside}`, 'a parent lives at a coarser (smaller) nside');
  return Math.floor(pix / (nside / parentNside) ** 2);
}
