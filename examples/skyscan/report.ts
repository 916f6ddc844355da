/**
 * What the demo prints and writes about a finished scan: the summary in words, and the sky map as JSON
 * (every evaluated pixel with its centre and value, the best fit, the 90% region, the truth).
 */
import { pix2angNest } from './healpix.js';
import type { EventTruth } from './likelihood.js';
import type { ScanOutcome, ScanSummary } from './scan.js';
import { angToRaDec } from './sky.js';

const signed = (x: number, digits = 2) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(digits)}`;

/** The summary as lines for the terminal. */
export function summaryLines(summary: ScanSummary): string[] {
  const { best, region, truth } = summary;
  const lines = [
    `best fit:   RA ${best.ra.toFixed(2)}°  Dec ${signed(best.dec)}°   (nside ${best.nside} pixel ${best.pix}, −2 ln L = ${best.llh.toFixed(2)}; fitted noise fraction ${best.noiseFraction.toFixed(2)}, resolution scale ${best.resolutionScale.toFixed(2)})`,
    `90% region: RA −${region.raMinus.toFixed(2)}/+${region.raPlus.toFixed(2)}°  Dec −${region.decMinus.toFixed(2)}/+${region.decPlus.toFixed(2)}°  ` +
      `area ${region.areaDeg2.toFixed(1)} deg², all within ${region.enclosingRadiusDeg.toFixed(2)}° of the best fit   ` +
      `(Δ(−2 ln L) < ${region.deltaLlh.toFixed(2)}, Wilks' theorem with 2 dof)`,
  ];
  if (region.exact) {
    lines.push(`            exact at nside ${region.resolvedAtNside}: every coarse pixel touching the region was refined, so area and bounds are not lower bounds`);
  } else {
    const coarse = Object.entries(region.pixelsByNside).filter(([nside]) => Number(nside) !== region.resolvedAtNside);
    lines.push(
      `            note: a lower bound — the refinement stopped growing with the region still touching coarse pixels${coarse.length > 0 ? ` (${coarse.map(([n, c]) => `${c} pixel(s) at nside ${n}`).join(', ')} in it)` : ''}`,
    );
  }
  if (truth) {
    lines.push(
      `truth:      RA ${truth.ra.toFixed(2)}°  Dec ${signed(truth.dec)}°   ${truth.distanceDeg.toFixed(2)}° from the best fit, ` +
        `${truth.insideRegion ? 'INSIDE' : 'OUTSIDE'} the 90% region (Δ(−2 ln L) = ${truth.deltaLlh.toFixed(2)})`,
    );
  }
  return lines;
}

/** Everything about the run a follow-up needs, as one JSON document. */
export interface SkyMapDocument {
  seed: number;
  nside: number;
  refineNside: number;
  rounds: { nside: number; pixels: number }[];
  bestFit: ScanSummary['best'];
  region90: ScanSummary['region'];
  truth: (EventTruth & { distanceDeg: number; deltaLlh: number; insideRegion: boolean }) | undefined;
  /** Every evaluated pixel: coarse ones and the refined children (the finer ones supersede their parent). */
  pixels: { nside: number; pix: number; ra: number; dec: number; llh: number; deltaLlh: number; noiseFraction: number; resolutionScale: number }[];
}

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Build the JSON sky map of a scan. */
export function skyMapDocument(outcome: ScanOutcome, meta: { seed: number; nside: number; refineNside: number; truth?: EventTruth }): SkyMapDocument {
  const { summary } = outcome;
  return {
    seed: meta.seed,
    nside: meta.nside,
    refineNside: meta.refineNside,
    rounds: outcome.rounds,
    bestFit: summary.best,
    region90: summary.region,
    truth: meta.truth && summary.truth ? { ...meta.truth, ...summary.truth, direction: meta.truth.direction } : undefined,
    pixels: outcome.results.map((r) => {
      const { theta, phi } = pix2angNest(r.nside, r.pix);
      const { ra, dec } = angToRaDec(theta, phi);
      return {
        nside: r.nside,
        pix: r.pix,
        ra: round(ra),
        dec: round(dec),
        llh: round(r.llh),
        deltaLlh: round(r.llh - summary.best.llh),
        noiseFraction: round(r.noiseFraction),
        resolutionScale: round(r.resolutionScale),
      };
    }),
  };
}
