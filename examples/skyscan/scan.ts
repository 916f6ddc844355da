/**
 * The sky scan's logic, apart from how pixels get evaluated: a coarse pass over the whole sky, a finer pass
 * over the children of the most likely coarse pixels (as IceCube's realtime scanner does), and the summary
 * a follow-up astronomer reads — best-fit direction, 90% region, and (for a simulated event) where the
 * truth fell.
 *
 * `runScan` takes the evaluation as a function, so the demo evaluates pixels as events on a broker
 * through pilots while the tests evaluate the very same pixels in-process.
 */
import { EwmsError } from '../../common/errors.js';
import { ang2pixNest, childrenNest, isValidNside, pix2angNest, pixelArea } from './healpix.js';
import { DELTA_LLH_90 } from './likelihood.js';
import { angToRaDec, angToVec, angularDistanceDeg, raDecToAng, raDecToVec, type RaDec } from './sky.js';

/** One pixel to evaluate. */
export interface PixelRef {
  nside: number;
  pix: number;
}

/** One evaluated pixel: −2 ln L at its centre and the fitted nuisances. */
export interface PixelResult extends PixelRef {
  llh: number;
  noiseFraction: number;
  resolutionScale: number;
}

/**
 * Evaluates a batch of pixels; `round` is 1 for the coarse pass, 2 for the refinement around the best coarse
 * pixels, 3 and on for growing the refinement until the 90% region's border is refined (`kind` says which).
 */
export type EvaluatePixels = (pixels: PixelRef[], round: ScanRound) => Promise<PixelResult[]>;

/** One round of a scan. */
export interface ScanRound {
  index: number;
  nside: number;
  kind: 'sky' | 'refine' | 'grow';
}

/** How to refine after the coarse pass. */
export interface RefinementOptions {
  /** Refine every coarse pixel within this Δ(−2 ln L) of the coarse best (default 16)… */
  deltaLlh?: number;
  /** …but at least this many of the best coarse pixels (default 4)… */
  minPixels?: number;
  /** …and at most this many (default 10). */
  maxPixels?: number;
}

/** The scan's resolution: coarse and refined nside, both powers of two, refined ≥ coarse. */
export interface ScanOptions extends RefinementOptions {
  nside: number;
  refineNside: number;
}

/** Scan options that cannot work (not powers of two, refinement coarser than the first pass). */
export class InvalidScanOptionsError extends EwmsError {}

/** An evaluation that did not return a value for every pixel it was given. */
export class IncompleteScanError extends EwmsError {}

/** Reject resolutions that make no scan. */
export function checkScanOptions({ nside, refineNside }: ScanOptions): void {
  if (!isValidNside(nside) || !isValidNside(refineNside)) {
    throw new InvalidScanOptionsError(
      `nside ${nside} / refine-nside ${refineNside}: both must be powers of two`,
      'e.g. --nside 8 --refine-nside 64',
    );
  }
  if (refineNside < nside) {
    throw new InvalidScanOptionsError(
      `refine-nside ${refineNside} is coarser than nside ${nside}`,
      'the refinement goes to a finer (larger) nside; equal means no refinement',
    );
  }
}

/** Every pixel of the sky at `nside`. */
export function allPixels(nside: number): PixelRef[] {
  return Array.from({ length: 12 * nside * nside }, (_, pix) => ({ nside, pix }));
}

/**
 * The pixels of the second pass: the children at `refineNside` of the best coarse pixels — those within
 * `deltaLlh` of the coarse minimum, bounded below by `minPixels` and above by `maxPixels`.
 */
export function chooseRefinement(coarse: readonly PixelResult[], refineNside: number, options: RefinementOptions = {}): PixelRef[] {
  const { deltaLlh = 16, minPixels = 4, maxPixels = 10 } = options;
  if (coarse.length === 0) return [];
  const sorted = [...coarse].sort((a, b) => a.llh - b.llh);
  const best = (sorted[0] as PixelResult).llh;
  const within = sorted.filter((p) => p.llh - best <= deltaLlh).length;
  const count = Math.min(sorted.length, maxPixels, Math.max(minPixels, within));
  const refined: PixelRef[] = [];
  for (const parent of sorted.slice(0, count)) {
    if (refineNside === parent.nside) continue; // nothing finer to look at
    for (const pix of childrenNest(parent.nside, parent.pix, refineNside)) refined.push({ nside: refineNside, pix });
  }
  return refined;
}

/**
 * The coarse pixels still touching the 90% region: those in it, and those within reach of one of its pixels
 * (centres closer than the two pixels' radius bounds: conservative, so no pixel that touches is missed, at the
 * price of refining a few that only come close). Their children are what the region still needs: once none
 * is left, every pixel that borders the region has been evaluated at the fine resolution, and the region's
 * area and bounds are those of the fine grid, not a lower bound.
 */
export function regionBorderCoarsePixels(map: SkyMap, refineNside: number): PixelResult[] {
  const leaves = map.leaves();
  if (leaves.length === 0) return [];
  const best = leaves.reduce((a, b) => (b.llh < a.llh ? b : a)).llh;
  const region = leaves.filter((l) => l.llh - best < DELTA_LLH_90).map((l) => {
    const { theta, phi } = pix2angNest(l.nside, l.pix);
    return { leaf: l, dir: angToVec(theta, phi), reach: pixelRadiusBoundDeg(l.nside) };
  });
  return leaves.filter((leaf) => {
    if (leaf.nside >= refineNside) return false;
    if (leaf.llh - best < DELTA_LLH_90) return true;
    const { theta, phi } = pix2angNest(leaf.nside, leaf.pix);
    const dir = angToVec(theta, phi);
    const reach = pixelRadiusBoundDeg(leaf.nside);
    return region.some((r) => angularDistanceDeg(dir, r.dir) <= reach + r.reach);
  });
}

/** Rounds of growth at most: a region that still reaches new coarse pixels after these is reported as not exact. */
export const MAX_GROWTH_ROUNDS = 8;

/**
 * The scan's multi-resolution sky map: coarse pixels, with the refined ones replaced by their children.
 * `leaves` covers the whole sphere exactly once.
 */
export class SkyMap {
  private readonly levels = new Map<number, Map<number, PixelResult>>();

  constructor(results: Iterable<PixelResult>) {
    for (const r of results) {
      let level = this.levels.get(r.nside);
      if (!level) this.levels.set(r.nside, (level = new Map()));
      level.set(r.pix, r);
    }
  }

  /** The resolutions present, finest first. */
  get nsides(): number[] {
    return [...this.levels.keys()].sort((a, b) => b - a);
  }

  /** The finest evaluated pixel containing a direction, if any. */
  lookup(theta: number, phi: number): PixelResult | undefined {
    for (const nside of this.nsides) {
      const hit = this.levels.get(nside)?.get(ang2pixNest(nside, theta, phi));
      if (hit) return hit;
    }
    return undefined;
  }

  /** Pixels not superseded by evaluated children: the finest cover of the sky this scan has. */
  leaves(): PixelResult[] {
    const nsides = this.nsides;
    const out: PixelResult[] = [];
    for (const [i, nside] of nsides.entries()) {
      const finer = nsides.slice(0, i);
      for (const r of this.levels.get(nside)?.values() ?? []) {
        const { theta, phi } = pix2angNest(nside, r.pix);
        // A coarse pixel whose centre lies in an evaluated finer pixel has been refined.
        const refined = finer.some((f) => this.levels.get(f)?.has(ang2pixNest(f, theta, phi)));
        if (!refined) out.push(r);
      }
    }
    return out;
  }
}

/** The 90% region and the best fit, the way an alert reports them. */
export interface ScanSummary {
  best: RaDec & { llh: number; nside: number; pix: number; noiseFraction: number; resolutionScale: number };
  region: {
    confidence: 0.9;
    /** Δ(−2 ln L) that bounds the region (Wilks, 2 dof). */
    deltaLlh: number;
    areaDeg2: number;
    /** Region extent around the best fit (degrees), GCN style: RA − / +, Dec − / +. */
    raMinus: number;
    raPlus: number;
    decMinus: number;
    decPlus: number;
    /** Radius of a circle around the best fit that encloses every region pixel entirely. */
    enclosingRadiusDeg: number;
    /** Region pixels by nside: coarse ones mean the region reaches beyond the refined patch. */
    pixelsByNside: Record<string, number>;
    /**
     * Every coarse pixel that touches the region was refined, so area and bounds are those of the fine grid
     * (not a lower bound). False when the growth stopped at `MAX_GROWTH_ROUNDS`.
     */
    exact: boolean;
    /** The nside the region is resolved at. */
    resolvedAtNside: number;
  };
  truth?: RaDec & { distanceDeg: number; deltaLlh: number; insideRegion: boolean };
}

/** The side of a square of a pixel's area, in degrees: the pixel's typical size. */
function pixelSizeDeg(nside: number): number {
  return (Math.sqrt(pixelArea(nside)) * 180) / Math.PI;
}

/**
 * An upper bound of the distance from a pixel centre to any point of the pixel, in degrees. HEALPix pixels
 * are not squares; 1.2 × the pixel size bounds the worst (polar-cap) pixels, as the healpix tests check.
 */
export function pixelRadiusBoundDeg(nside: number): number {
  return 1.2 * pixelSizeDeg(nside);
}

/** Signed RA difference a − b in degrees, wrapped to (−180, 180]. */
function raDiff(a: number, b: number): number {
  let d = (a - b) % 360;
  if (d > 180) d -= 360;
  if (d <= -180) d += 360;
  return d;
}

/** Best fit, 90% region and truth check of a finished scan (`refineNside`: the finest nside it refines to). */
export function summarize(map: SkyMap, truth?: RaDec, refineNside = Math.max(...map.nsides)): ScanSummary {
  const leaves = map.leaves();
  if (leaves.length === 0) throw new IncompleteScanError('the scan has no evaluated pixels', 'evaluate at least one pass');
  const bestPixel = leaves.reduce((a, b) => (b.llh < a.llh ? b : a));
  const bestAng = pix2angNest(bestPixel.nside, bestPixel.pix);
  const bestDir = angToVec(bestAng.theta, bestAng.phi);
  const bestRaDec = angToRaDec(bestAng.theta, bestAng.phi);

  let areaSr = 0;
  let raMinus = 0;
  let raPlus = 0;
  let decMinus = 0;
  let decPlus = 0;
  let enclosing = 0;
  const pixelsByNside: Record<string, number> = {};
  for (const leaf of leaves) {
    if (leaf.llh - bestPixel.llh >= DELTA_LLH_90) continue;
    const { theta, phi } = pix2angNest(leaf.nside, leaf.pix);
    const c = angToRaDec(theta, phi);
    const halfDeg = pixelSizeDeg(leaf.nside) / 2;
    areaSr += pixelArea(leaf.nside);
    pixelsByNside[leaf.nside] = (pixelsByNside[leaf.nside] ?? 0) + 1;
    // RA extent measured on the sky near the best fit's declination would mislead at the poles; quote
    // it in RA degrees as alerts do.
    const cosDec = Math.max(Math.cos((c.dec * Math.PI) / 180), 1e-3);
    const dRa = raDiff(c.ra, bestRaDec.ra);
    raPlus = Math.max(raPlus, dRa + halfDeg / cosDec);
    raMinus = Math.max(raMinus, -dRa + halfDeg / cosDec);
    decPlus = Math.max(decPlus, c.dec - bestRaDec.dec + halfDeg);
    decMinus = Math.max(decMinus, bestRaDec.dec - c.dec + halfDeg);
    enclosing = Math.max(enclosing, angularDistanceDeg(bestDir, angToVec(theta, phi)) + pixelRadiusBoundDeg(leaf.nside));
  }

  const summary: ScanSummary = {
    best: {
      ...bestRaDec,
      llh: bestPixel.llh,
      nside: bestPixel.nside,
      pix: bestPixel.pix,
      noiseFraction: bestPixel.noiseFraction,
      resolutionScale: bestPixel.resolutionScale,
    },
    region: {
      confidence: 0.9,
      deltaLlh: DELTA_LLH_90,
      areaDeg2: areaSr * (180 / Math.PI) ** 2,
      raMinus: Math.min(raMinus, 180),
      raPlus: Math.min(raPlus, 180),
      decMinus,
      decPlus,
      enclosingRadiusDeg: Math.min(enclosing, 180),
      pixelsByNside,
      exact: regionBorderCoarsePixels(map, refineNside).length === 0,
      resolvedAtNside: refineNside,
    },
  };
  if (truth) {
    const { theta, phi } = raDecToAng(truth);
    const at = map.lookup(theta, phi);
    const deltaLlh = at ? at.llh - bestPixel.llh : Number.POSITIVE_INFINITY;
    summary.truth = {
      ...truth,
      distanceDeg: angularDistanceDeg(bestDir, raDecToVec(truth)),
      deltaLlh,
      insideRegion: deltaLlh < DELTA_LLH_90,
    };
  }
  return summary;
}

/** What a finished scan hands back: every evaluated pixel, the map, and its summary. */
export interface ScanOutcome {
  results: PixelResult[];
  map: SkyMap;
  summary: ScanSummary;
  rounds: { nside: number; pixels: number; kind: ScanRound['kind'] }[];
}

/** Make sure an evaluation answered every pixel it was asked about, exactly once. */
function checkComplete(asked: readonly PixelRef[], got: readonly PixelResult[], round: number): void {
  const want = new Set(asked.map((p) => `${p.nside}/${p.pix}`));
  const seen = new Set(got.map((p) => `${p.nside}/${p.pix}`));
  const missing = [...want].filter((k) => !seen.has(k));
  if (missing.length > 0) {
    throw new IncompleteScanError(
      `round ${round}: ${missing.length} of ${want.size} pixels have no result (e.g. ${missing.slice(0, 3).join(', ')})`,
      'look at the dead-letter queue and the task logs for why those pixels failed',
    );
  }
}

/**
 * Coarse pass over the whole sky, refinement around the best region, then growth of the refinement until the
 * 90% region's border is refined (every coarse pixel touching the region replaced by its children), summary.
 */
export async function runScan(evaluate: EvaluatePixels, options: ScanOptions, truth?: RaDec): Promise<ScanOutcome> {
  checkScanOptions(options);
  const coarsePixels = allPixels(options.nside);
  const coarse = await evaluate(coarsePixels, { index: 1, nside: options.nside, kind: 'sky' });
  checkComplete(coarsePixels, coarse, 1);
  const rounds: ScanOutcome['rounds'] = [{ nside: options.nside, pixels: coarsePixels.length, kind: 'sky' }];
  let results = coarse;
  let next = chooseRefinement(coarse, options.refineNside, options);
  let kind: ScanRound['kind'] = 'refine';
  while (next.length > 0 && rounds.length < 2 + MAX_GROWTH_ROUNDS) {
    const index = rounds.length + 1;
    const fine = await evaluate(next, { index, nside: options.refineNside, kind });
    checkComplete(next, fine, index);
    rounds.push({ nside: options.refineNside, pixels: next.length, kind });
    results = [...results, ...fine];
    next = regionBorderCoarsePixels(new SkyMap(results), options.refineNside).flatMap((parent) =>
      childrenNest(parent.nside, parent.pix, options.refineNside).map((pix) => ({ nside: options.refineNside, pix })),
    );
    kind = 'grow';
  }
  const map = new SkyMap(results);
  return { results, map, summary: summarize(map, truth, options.refineNside), rounds };
}
