/**
 * The physics of the sky-scan demo: a toy neutrino event and the likelihood of one arrival direction.
 *
 * The model. A through-going muon from a neutrino leaves light in the detector; from the photon arrival
 * times of each cluster of hit optical modules one gets a rough estimate of the track direction. Here an
 * event is simply a set of such per-cluster direction estimates ("hits", unit vectors):
 *
 * - a fraction `1 − f` of hits is signal: scattered around the true direction following a von Mises–Fisher
 *   distribution with concentration κ = 1/(s·σ)², σ the nominal per-hit resolution (12°) and `s` a
 *   resolution scale that stands for what the ice model and the energy reconstruction get wrong;
 * - a fraction `f` is noise: dark-noise and late, heavily scattered light that points nowhere, i.e. an
 *   isotropic direction.
 *
 * The likelihood of a direction d is the product over hits of `(1 − f)·vMF(x | d, κ(s)) + f/(4π)`. The two
 * nuisance parameters (f, s) are unknown; like the real scanner, which minimises over the vertex position,
 * time and energy for every pixel, we **profile** them out: for each pixel the task maximises the
 * likelihood over (f, s). By Wilks' theorem −2 ln of the profile likelihood ratio between a direction and
 * the best fit is asymptotically χ² with 2 degrees of freedom (the two sky coordinates), so the 90%
 * confidence region is where Δ(−2 ln L) < 4.61.
 *
 * Everything here is deterministic (seeded random numbers) and free of I/O, so the statistics can be tested
 * directly, and the very same code runs inside each task.
 */
import { EwmsError } from '../../common/errors.js';
import { dot, orthonormalBasis, raDecToVec, vecToRaDec, type RaDec, type Vec3 } from './sky.js';

/** Nominal resolution of one hit (one-dimensional angular σ), in degrees. */
export const NOMINAL_HIT_SIGMA_DEG = 12;

/** Range of the resolution scale the profile search covers; the simulation draws from inside it. */
export const RESOLUTION_SCALE_RANGE = { min: 0.6, max: 1.6 } as const;

/** Largest noise fraction the profile search allows. */
export const MAX_NOISE_FRACTION = 0.9;

/** Δ(−2 ln L) of the 90% region for 2 free parameters: the χ²₂ quantile, −2·ln(0.1). */
export const DELTA_LLH_90 = -2 * Math.log(0.1);

/** One simulated event, as the tasks receive it. */
export interface NeutrinoEvent {
  /** Per-cluster direction estimates (unit vectors, rounded to 6 decimals as they travel as JSON). */
  hits: Vec3[];
  /** Nominal per-hit resolution in degrees. */
  sigmaHitDeg: number;
}

/** What the simulation knows and the scan must not: the true direction and nuisance values. */
export interface EventTruth {
  direction: RaDec;
  noiseFraction: number;
  resolutionScale: number;
}

/** The profile likelihood of one direction. */
export interface DirectionFit {
  /** −2 ln L at the best nuisance values. */
  llh: number;
  /** Fitted noise fraction f. */
  noiseFraction: number;
  /** Fitted resolution scale s. */
  resolutionScale: number;
}

/** An event that cannot be evaluated (no hits, non-numbers, a non-positive resolution). */
export class InvalidEventError extends EwmsError {}

/** Mulberry32: a small, fast, well-mixed 32-bit generator; returns uniform numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A direction drawn uniformly on the sphere. */
export function randomDirection(random: () => number): Vec3 {
  const z = 2 * random() - 1;
  const phi = 2 * Math.PI * random();
  const r = Math.sqrt(1 - z * z);
  return [r * Math.cos(phi), r * Math.sin(phi), z];
}

/**
 * A direction drawn from the von Mises–Fisher distribution around `mean` with concentration `kappa`,
 * by inverting the CDF of cos(angle): w = 1 + ln(u + (1 − u)·e^(−2κ)) / κ.
 */
export function sampleVonMisesFisher(mean: Vec3, kappa: number, random: () => number): Vec3 {
  const u = random();
  const w = Math.max(-1, Math.min(1, 1 + Math.log(u + (1 - u) * Math.exp(-2 * kappa)) / kappa));
  const v = 2 * Math.PI * random();
  const r = Math.sqrt(1 - w * w);
  const [e1, e2] = orthonormalBasis(mean);
  const c = r * Math.cos(v);
  const s = r * Math.sin(v);
  return [w * mean[0] + c * e1[0] + s * e2[0], w * mean[1] + c * e1[1] + s * e2[1], w * mean[2] + c * e1[2] + s * e2[2]];
}

/** Concentration of the per-hit vMF for a resolution σ (degrees) scaled by `scale`. */
export function kappaFor(sigmaDeg: number, scale: number): number {
  const sigma = (sigmaDeg * scale * Math.PI) / 180;
  return 1 / (sigma * sigma);
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/**
 * Simulate one event from `seed`: a true direction uniform on the sky, 30–59 hits, a noise fraction in
 * [0.05, 0.35] and a resolution scale in [0.8, 1.3]. Same seed, same event.
 */
export function simulateEvent(seed: number): { event: NeutrinoEvent; truth: EventTruth } {
  const random = seededRandom(seed);
  const direction = randomDirection(random);
  const noiseFraction = 0.05 + 0.3 * random();
  const resolutionScale = 0.8 + 0.5 * random();
  const nHits = 30 + Math.floor(30 * random());
  const kappa = kappaFor(NOMINAL_HIT_SIGMA_DEG, resolutionScale);
  const hits: Vec3[] = [];
  for (let i = 0; i < nHits; i++) {
    const hit = random() < noiseFraction ? randomDirection(random) : sampleVonMisesFisher(direction, kappa, random);
    hits.push([round6(hit[0]), round6(hit[1]), round6(hit[2])]);
  }
  return {
    event: { hits, sigmaHitDeg: NOMINAL_HIT_SIGMA_DEG },
    truth: { direction: vecToRaDec(direction), noiseFraction, resolutionScale },
  };
}

/** Check an event received from elsewhere (a task's infile) before trusting it. */
export function validateEvent(value: unknown): NeutrinoEvent {
  const e = value as Partial<NeutrinoEvent> | null;
  const isVec = (h: unknown): h is Vec3 =>
    Array.isArray(h) && h.length === 3 && h.every((c) => typeof c === 'number' && Number.isFinite(c));
  if (!e || !Array.isArray(e.hits) || e.hits.length === 0 || !e.hits.every(isVec)) {
    throw new InvalidEventError('the event has no usable hits', 'hits must be a non-empty array of [x, y, z] unit vectors');
  }
  if (typeof e.sigmaHitDeg !== 'number' || !(e.sigmaHitDeg > 0)) {
    throw new InvalidEventError(`the event's sigmaHitDeg is ${String(e.sigmaHitDeg)}`, 'give the per-hit resolution in degrees, > 0');
  }
  return { hits: e.hits, sigmaHitDeg: e.sigmaHitDeg };
}

const ISOTROPIC_DENSITY = 1 / (4 * Math.PI);

/**
 * max over f of Σ ln((1 − f)·p_i + f·q) for fixed signal densities p_i. The function is concave in f, so
 * its maximum on [0, MAX_NOISE_FRACTION] is at a boundary when the slope there points outwards, else where
 * the slope vanishes: found by Newton steps kept inside a shrinking bracket.
 */
function profileNoiseFraction(signal: Float64Array, start: number): { logL: number; f: number } {
  const q = ISOTROPIC_DENSITY;
  const slope = (f: number) => {
    let g = 0;
    let h = 0;
    for (const p of signal) {
      const d = (q - p) / ((1 - f) * p + f * q);
      g += d;
      h -= d * d;
    }
    return { g, h };
  };
  let f: number;
  if (slope(0).g <= 0) f = 0;
  else if (slope(MAX_NOISE_FRACTION).g >= 0) f = MAX_NOISE_FRACTION;
  else {
    let lo = 0;
    let hi = MAX_NOISE_FRACTION;
    f = Math.min(Math.max(start, 0.01), MAX_NOISE_FRACTION - 0.01);
    for (let iter = 0; iter < 40; iter++) {
      const { g, h } = slope(f);
      if (g > 0) lo = f;
      else hi = f;
      let next = h < 0 ? f - g / h : (lo + hi) / 2;
      if (!(next > lo && next < hi)) next = (lo + hi) / 2; // Newton left the bracket: bisect instead
      const done = Math.abs(next - f) < 1e-6;
      f = next;
      if (done) break;
    }
  }
  let logL = 0;
  for (const p of signal) logL += Math.log((1 - f) * p + f * q);
  return { logL, f };
}

/** Profile over f at one resolution scale; returns −2 ln L. */
function llhAtScale(cosines: Float64Array, sigmaDeg: number, scale: number, fStart: number): { llh: number; f: number } {
  const kappa = kappaFor(sigmaDeg, scale);
  const norm = Math.log(kappa / (2 * Math.PI * -Math.expm1(-2 * kappa)));
  const signal = new Float64Array(cosines.length);
  // log vMF density on the sphere, written to stay finite for large κ.
  for (let i = 0; i < cosines.length; i++) signal[i] = Math.exp(norm + kappa * ((cosines[i] as number) - 1));
  const { logL, f } = profileNoiseFraction(signal, fStart);
  return { llh: -2 * logL, f };
}

/**
 * −2 ln of the profile likelihood of `direction` for `event`: minimised over the noise fraction (Newton,
 * exact) and the resolution scale (a grid, then golden-section search around the best grid point).
 */
export function profileLikelihood(event: NeutrinoEvent, direction: Vec3): DirectionFit {
  const cosines = new Float64Array(event.hits.length);
  for (let i = 0; i < event.hits.length; i++) {
    const h = event.hits[i] as Vec3;
    // Hits are rounded in transit; normalise so cos stays in [−1, 1].
    cosines[i] = Math.max(-1, Math.min(1, dot(h, direction) / Math.hypot(h[0], h[1], h[2])));
  }
  const { min, max } = RESOLUTION_SCALE_RANGE;
  const at = (scale: number, fStart: number) => ({ ...llhAtScale(cosines, event.sigmaHitDeg, scale, fStart), s: scale });
  // A coarse grid in the resolution scale finds the basin, golden-section search narrows it down.
  const steps = 6;
  let best = at(min, 0.2);
  let k = 0;
  for (let i = 1; i <= steps; i++) {
    const here = at(min + ((max - min) * i) / steps, best.f);
    if (here.llh < best.llh) {
      best = here;
      k = i;
    }
  }
  const gridStep = (max - min) / steps;
  let a = Math.max(min, min + (k - 1) * gridStep);
  let b = Math.min(max, min + (k + 1) * gridStep);
  const ratio = (Math.sqrt(5) - 1) / 2;
  let c = at(b - ratio * (b - a), best.f);
  let d = at(a + ratio * (b - a), best.f);
  // 10 steps shrink the bracket by 0.618^10 ≈ 1/120: the scale to ±0.003, far below its uncertainty
  // (a miss of δ costs about 70·δ² ≈ 0.001 in −2 ln L).
  for (let iter = 0; iter < 10; iter++) {
    if (c.llh < d.llh) {
      b = d.s;
      d = c;
      c = at(b - ratio * (b - a), d.f);
    } else {
      a = c.s;
      c = d;
      d = at(a + ratio * (b - a), c.f);
    }
  }
  for (const x of [c, d]) if (x.llh < best.llh) best = x;
  return { llh: best.llh, noiseFraction: best.f, resolutionScale: best.s };
}

/** `profileLikelihood` at a direction given in RA/Dec degrees. */
export function profileLikelihoodAt(event: NeutrinoEvent, direction: RaDec): DirectionFit {
  return profileLikelihood(event, raDecToVec(direction));
}
