/**
 * The scan's sky map as a self-contained SVG: the whole sky in a Mollweide projection (RA growing to the
 * left, as on the sky, centred on RA 180°) and a zoom on the best fit in a gnomonic projection, coloured by
 * Δ(−2 ln L), with the 90% region outlined and the best fit and the true direction marked.
 *
 * The map is rasterised: each image cell looks up the finest evaluated HEALPix pixel under it, and equal
 * neighbouring cells of a row are merged into one rectangle, which keeps the file small.
 */
import { DELTA_LLH_90 } from './likelihood.js';
import type { ScanSummary, SkyMap } from './scan.js';
import { orthonormalBasis, raDecToVec, vecToAng, vecToRaDec, type RaDec, type Vec3 } from './sky.js';

const DEG = Math.PI / 180;

/** Viridis, sampled at 9 stops: dark blue (unlikely) to yellow (best). */
const VIRIDIS: readonly [number, number, number][] = [
  [68, 1, 84],
  [71, 44, 122],
  [59, 81, 139],
  [44, 113, 142],
  [33, 144, 141],
  [39, 173, 129],
  [92, 200, 99],
  [170, 220, 50],
  [253, 231, 37],
];

/** Colour of a value t in [0, 1] (0 = dark, 1 = bright). */
export function viridis(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  const a = VIRIDIS[i] as [number, number, number];
  const b = VIRIDIS[i + 1] as [number, number, number];
  const hex = (k: 0 | 1 | 2) => Math.round(a[k] + (b[k] - a[k]) * f).toString(16).padStart(2, '0');
  return `#${hex(0)}${hex(1)}${hex(2)}`;
}

/** Escape text for XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const fmt = (x: number) => (Math.round(x * 10) / 10).toString();

/** Mollweide projection of unit radius: (lon, lat) in radians → (x, y), x in [−2√2, 2√2], y in [−√2, √2]. */
export function mollweide(lon: number, lat: number): { x: number; y: number } {
  // Solve 2θ + sin 2θ = π sin(lat) for the auxiliary angle θ (Newton; start from lat).
  let theta = lat;
  const target = Math.PI * Math.sin(lat);
  for (let i = 0; i < 50 && Math.abs(Math.abs(lat) - Math.PI / 2) > 1e-9; i++) {
    const step = (2 * theta + Math.sin(2 * theta) - target) / (2 + 2 * Math.cos(2 * theta));
    theta -= step;
    if (Math.abs(step) < 1e-10) break;
  }
  if (Math.abs(Math.abs(lat) - Math.PI / 2) <= 1e-9) theta = lat;
  return { x: ((2 * Math.SQRT2) / Math.PI) * lon * Math.cos(theta), y: Math.SQRT2 * Math.sin(theta) };
}

/** Inverse Mollweide: (x, y) of unit radius → (lon, lat) in radians, or undefined outside the ellipse. */
export function inverseMollweide(x: number, y: number): { lon: number; lat: number } | undefined {
  if (Math.abs(y) > Math.SQRT2) return undefined;
  const theta = Math.asin(y / Math.SQRT2);
  const lon = (Math.PI * x) / (2 * Math.SQRT2 * Math.cos(theta));
  if (!(Math.abs(lon) <= Math.PI)) return undefined;
  const s = (2 * theta + Math.sin(2 * theta)) / Math.PI;
  return { lon, lat: Math.asin(Math.max(-1, Math.min(1, s))) };
}

/** A rectangular panel of the image and how its points map to the sky. */
interface Panel {
  x0: number;
  y0: number;
  width: number;
  height: number;
  /** Image point → direction (undefined: not on the sky). */
  toSky(x: number, y: number): Vec3 | undefined;
  /** Direction → image point (undefined: not in this panel). */
  toImage(v: Vec3): { x: number; y: number } | undefined;
}

function mollweidePanel(x0: number, y0: number, width: number): Panel {
  const r = width / (4 * Math.SQRT2);
  const cx = x0 + width / 2;
  const cy = y0 + width / 4;
  const centreRa = 180;
  return {
    x0,
    y0,
    width,
    height: width / 2,
    toSky(x, y) {
      const p = inverseMollweide((cx - x) / r, (cy - y) / r);
      return p ? raDecToVec({ ra: centreRa + p.lon / DEG, dec: p.lat / DEG }) : undefined;
    },
    toImage(v) {
      const { ra, dec } = vecToRaDec(v);
      let lon = ra - centreRa;
      if (lon > 180) lon -= 360;
      if (lon <= -180) lon += 360;
      const p = mollweide(lon * DEG, dec * DEG);
      return { x: cx - p.x * r, y: cy - p.y * r };
    },
  };
}

/** Local east and north unit vectors at a direction (any perpendicular pair at the poles). */
function eastNorth(centre: Vec3): [Vec3, Vec3] {
  const { ra, dec } = vecToRaDec(centre);
  if (Math.abs(dec) > 89.999) return orthonormalBasis(centre);
  const a = ra * DEG;
  const d = dec * DEG;
  return [
    [-Math.sin(a), Math.cos(a), 0],
    [-Math.sin(d) * Math.cos(a), -Math.sin(d) * Math.sin(a), Math.cos(d)],
  ];
}

function gnomonicPanel(x0: number, y0: number, size: number, centre: Vec3, halfWidthDeg: number): Panel {
  const [east, north] = eastNorth(centre);
  const scale = size / 2 / Math.tan(halfWidthDeg * DEG); // pixels per unit of tangent-plane coordinate
  const cx = x0 + size / 2;
  const cy = y0 + size / 2;
  return {
    x0,
    y0,
    width: size,
    height: size,
    toSky(x, y) {
      const u = (cx - x) / scale; // east is to the left
      const w = (cy - y) / scale;
      const v: Vec3 = [centre[0] + u * east[0] + w * north[0], centre[1] + u * east[1] + w * north[1], centre[2] + u * east[2] + w * north[2]];
      const n = Math.hypot(...v);
      return [v[0] / n, v[1] / n, v[2] / n];
    },
    toImage(v) {
      const c = v[0] * centre[0] + v[1] * centre[1] + v[2] * centre[2];
      if (c <= 0) return undefined;
      const u = (v[0] * east[0] + v[1] * east[1] + v[2] * east[2]) / c;
      const w = (v[0] * north[0] + v[1] * north[1] + v[2] * north[2]) / c;
      const p = { x: cx - u * scale, y: cy - w * scale };
      return p.x >= x0 && p.x <= x0 + size && p.y >= y0 && p.y <= y0 + size ? p : undefined;
    },
  };
}

/** What one raster cell shows. */
interface Cell {
  colour: string;
  inRegion: boolean;
}

/**
 * Rasterise a panel: rectangles of equal colour along each row, then the outline of the 90% region
 * as the edges between inside and outside cells.
 */
function rasterise(panel: Panel, cellPx: number, map: SkyMap, bestLlh: number, colourOf: (delta: number) => string): string {
  const cols = Math.round(panel.width / cellPx);
  const rows = Math.round(panel.height / cellPx);
  const grid: (Cell | undefined)[][] = [];
  for (let j = 0; j < rows; j++) {
    const row: (Cell | undefined)[] = [];
    for (let i = 0; i < cols; i++) {
      const v = panel.toSky(panel.x0 + (i + 0.5) * cellPx, panel.y0 + (j + 0.5) * cellPx);
      const pixel = v ? map.lookup(vecToAng(v).theta, vecToAng(v).phi) : undefined;
      row.push(pixel ? { colour: colourOf(pixel.llh - bestLlh), inRegion: pixel.llh - bestLlh < DELTA_LLH_90 } : undefined);
    }
    grid.push(row);
  }
  const out: string[] = [];
  for (let j = 0; j < rows; j++) {
    const row = grid[j] as (Cell | undefined)[];
    for (let i = 0; i < cols; ) {
      const cell = row[i];
      let k = i + 1;
      while (k < cols && cell && row[k]?.colour === cell.colour) k++;
      if (cell) {
        const x = panel.x0 + i * cellPx;
        const y = panel.y0 + j * cellPx;
        // A hair wider than the cell so anti-aliasing leaves no seams between rows.
        out.push(`<rect x="${fmt(x)}" y="${fmt(y)}" width="${fmt((k - i) * cellPx + 0.3)}" height="${fmt(cellPx + 0.3)}" fill="${cell.colour}"/>`);
      }
      i = k;
    }
  }
  const edges: string[] = [];
  const inside = (i: number, j: number) => grid[j]?.[i]?.inRegion === true;
  for (let j = 0; j <= rows; j++) {
    for (let i = 0; i <= cols; i++) {
      const x = panel.x0 + i * cellPx;
      const y = panel.y0 + j * cellPx;
      if (i < cols && inside(i, j) !== inside(i, j - 1)) edges.push(`M${fmt(x)} ${fmt(y)}h${cellPx}`);
      if (j < rows && inside(i, j) !== inside(i - 1, j)) edges.push(`M${fmt(x)} ${fmt(y)}v${cellPx}`);
    }
  }
  if (edges.length > 0) out.push(`<path d="${edges.join('')}" fill="none" stroke="#ffffff" stroke-width="1.2"/>`);
  return out.join('\n');
}

function markers(panel: Panel, best: RaDec, truth: RaDec | undefined): string {
  const out: string[] = [];
  const b = panel.toImage(raDecToVec(best));
  if (b) out.push(`<path d="M${fmt(b.x - 7)} ${fmt(b.y)}h14M${fmt(b.x)} ${fmt(b.y - 7)}v14" stroke="#ff2d2d" stroke-width="2"/>`);
  const t = truth ? panel.toImage(raDecToVec(truth)) : undefined;
  if (t) out.push(`<circle cx="${fmt(t.x)}" cy="${fmt(t.y)}" r="5" fill="none" stroke="#00e5ff" stroke-width="2"/>`);
  return out.join('\n');
}

/** Graticule of the Mollweide panel: meridians every 60°, parallels every 30°, with labels. */
function graticule(panel: Panel): string {
  const paths: string[] = [];
  const labels: string[] = [];
  const line = (points: RaDec[]) =>
    points
      .map((p, i) => {
        const q = panel.toImage(raDecToVec(p)) as { x: number; y: number };
        return `${i === 0 ? 'M' : 'L'}${fmt(q.x)} ${fmt(q.y)}`;
      })
      .join('');
  for (let ra = 0; ra < 360; ra += 60) {
    // Nudge RA 0 off the seam so it draws on the left edge only once.
    const r = ra === 0 ? 359.999 : ra;
    paths.push(line(Array.from({ length: 37 }, (_, i) => ({ ra: r, dec: -90 + i * 5 }))));
    const q = panel.toImage(raDecToVec({ ra: r, dec: 0 })) as { x: number; y: number };
    labels.push(`<text x="${fmt(q.x + 3)}" y="${fmt(q.y - 3)}">${ra}°</text>`);
  }
  for (let dec = -60; dec <= 60; dec += 30) {
    paths.push(line(Array.from({ length: 73 }, (_, i) => ({ ra: 180.001 + i * 5 - (i === 72 ? 0.002 : 0), dec }))));
    const q = panel.toImage(raDecToVec({ ra: 179.999, dec })) as { x: number; y: number };
    if (dec !== 0) labels.push(`<text x="${fmt(q.x + 3)}" y="${fmt(q.y - 3)}">${dec > 0 ? '+' : ''}${dec}°</text>`);
  }
  return `<path d="${paths.join('')}" fill="none" stroke="#ffffff" stroke-opacity="0.35" stroke-width="0.7"/>\n<g fill="#ffffff" fill-opacity="0.8" font-size="10">${labels.join('')}</g>`;
}

/** Options for `renderSkyMapSvg`. */
export interface SkyMapSvgOptions {
  /** A line above the maps (e.g. the event's name). */
  title?: string;
  /** Size of a raster cell in pixels (default 3): smaller is finer and larger. */
  cellPx?: number;
}

/** The sky map of a finished scan as an SVG document. */
export function renderSkyMapSvg(map: SkyMap, summary: ScanSummary, options: SkyMapSvgOptions = {}): string {
  const cellPx = options.cellPx ?? 3;
  const bestLlh = summary.best.llh;
  const leaves = map.leaves();
  const maxDelta = Math.max(1, ...leaves.map((l) => l.llh - bestLlh));
  // Log-like scale: the interesting structure is at small Δ, the far sky spans hundreds.
  const colourOf = (delta: number) => viridis(1 - Math.log1p(Math.max(0, delta)) / Math.log1p(maxDelta));

  const sky = mollweidePanel(10, 40, 720);
  const zoomHalf = Math.min(30, Math.max(5, 2 * summary.region.enclosingRadiusDeg));
  const zoom = gnomonicPanel(750, 40, 360, raDecToVec(summary.best), zoomHalf);
  const width = 1120;
  const height = 470;
  const truth = summary.truth;
  const best = summary.best;
  const legendY = 420;
  const stops = Array.from({ length: 9 }, (_, i) => `<stop offset="${i / 8}" stop-color="${viridis(1 - i / 8)}"/>`).join('');
  const tick = (delta: number) => {
    const x = 10 + (300 * Math.log1p(delta)) / Math.log1p(maxDelta);
    return `<path d="M${fmt(x)} ${legendY + 12}v4" stroke="#ffffff"/><text x="${fmt(x)}" y="${legendY + 27}" text-anchor="middle">${fmt(delta)}</text>`;
  };
  const title = options.title ?? 'Sky scan';
  const caption =
    `best fit RA ${best.ra.toFixed(2)}°, Dec ${best.dec.toFixed(2)}° · 90% region ${summary.region.areaDeg2.toFixed(1)} deg²` +
    (truth ? ` · truth RA ${truth.ra.toFixed(2)}°, Dec ${truth.dec.toFixed(2)}° (${truth.distanceDeg.toFixed(2)}° away, ${truth.insideRegion ? 'inside' : 'outside'} the region)` : '');

  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#1b1b24"/>`,
    `<g fill="#ffffff" font-size="13"><text x="10" y="18">${escapeXml(title)}</text><text x="10" y="33" font-size="11">${escapeXml(caption)}</text></g>`,
    `<g shape-rendering="crispEdges">`,
    rasterise(sky, cellPx, map, bestLlh, colourOf),
    `</g>`,
    graticule(sky),
    markers(sky, best, truth),
    `<g shape-rendering="crispEdges">`,
    rasterise(zoom, cellPx, map, bestLlh, colourOf),
    `</g>`,
    `<rect x="${zoom.x0}" y="${zoom.y0}" width="${zoom.width}" height="${zoom.height}" fill="none" stroke="#ffffff" stroke-opacity="0.6"/>`,
    markers(zoom, best, truth),
    `<g fill="#ffffff" font-size="11"><text x="${zoom.x0}" y="${zoom.y0 + zoom.height + 14}">zoom: ±${fmt(zoomHalf)}° around the best fit (gnomonic, east left)</text></g>`,
    `<defs><linearGradient id="scale">${stops}</linearGradient></defs>`,
    `<rect x="10" y="${legendY}" width="300" height="12" fill="url(#scale)"/>`,
    `<g fill="#ffffff" font-size="10">${[0, DELTA_LLH_90, 10, 30, 100, 300].filter((d) => d <= maxDelta).map(tick).join('')}`,
    `<text x="320" y="${legendY + 10}">Δ(−2 ln L) from the best fit</text>`,
    `<path d="M480 ${legendY + 6}h14M487 ${legendY - 1}v14" stroke="#ff2d2d" stroke-width="2"/><text x="500" y="${legendY + 10}">best fit</text>`,
    `<circle cx="560" cy="${legendY + 6}" r="5" fill="none" stroke="#00e5ff" stroke-width="2"/><text x="570" y="${legendY + 10}">true direction</text>`,
    `<path d="M660 ${legendY + 6}h16" stroke="#ffffff" stroke-width="1.2"/><text x="682" y="${legendY + 10}">90% region (Δ &lt; ${DELTA_LLH_90.toFixed(2)})</text></g>`,
    `</svg>`,
    '',
  ].join('\n');
}
