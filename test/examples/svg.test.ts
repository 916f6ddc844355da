/**
 * The sky-map SVG: well-formed XML (checked by a small tokenizer, no XML library), the projections it is
 * drawn with, and the marks a reader looks for (best fit, truth, 90% outline, colour scale).
 */
import { describe, expect, test } from 'vitest';
import { simulateEvent } from '../../examples/skyscan/likelihood.js';
import { runScan } from '../../examples/skyscan/scan.js';
import { escapeXml, inverseMollweide, mollweide, renderSkyMapSvg, viridis } from '../../examples/skyscan/svg.js';
import { evaluatePixel } from '../../examples/skyscan/task.js';
import { checkWellFormed } from './xml-check.js';

describe('the well-formedness check itself', () => {
  test('accepts a good document and rejects broken ones', () => {
    expect(checkWellFormed('<?xml version="1.0"?>\n<svg a="1"><g><rect b="x"/></g><text>a &amp; b</text></svg>\n')).toEqual(['svg', 'g', 'rect', 'text']);
    expect(() => checkWellFormed('<svg><g></svg>')).toThrow();
    expect(() => checkWellFormed('<svg><text>a & b</text></svg>')).toThrow(/bare &/);
    expect(() => checkWellFormed('<svg a=1></svg>')).toThrow(/malformed/);
    expect(() => checkWellFormed('<svg a="1" a="2"></svg>')).toThrow(/duplicate/);
    expect(() => checkWellFormed('<svg></svg><svg></svg>')).toThrow(/root/);
  });
});

describe('projections and colours', () => {
  test('Mollweide: the equator and the edge land where they should, and the inverse undoes it', () => {
    expect(mollweide(0, 0)).toEqual({ x: 0, y: 0 });
    expect(mollweide(Math.PI, 0).x).toBeCloseTo(2 * Math.SQRT2, 12);
    expect(mollweide(0, Math.PI / 2).y).toBeCloseTo(Math.SQRT2, 12);
    for (const [lon, lat] of [
      [1, 0.3],
      [-2.5, -1.2],
      [3, 1.5],
    ] as const) {
      const p = mollweide(lon, lat);
      const back = inverseMollweide(p.x, p.y)!;
      expect(back.lon).toBeCloseTo(lon, 9);
      expect(back.lat).toBeCloseTo(lat, 9);
    }
    expect(inverseMollweide(2.8, 1)).toBeUndefined(); // outside the ellipse
  });

  test('viridis runs from dark purple to yellow; text is escaped', () => {
    expect(viridis(0)).toBe('#440154');
    expect(viridis(1)).toBe('#fde725');
    expect(viridis(2)).toBe('#fde725');
    expect(escapeXml('a < b & "c" > d')).toBe('a &lt; b &amp; &quot;c&quot; &gt; d');
  });
});

describe('renderSkyMapSvg', () => {
  test('a scanned event renders to well-formed SVG with the best fit, the truth and the 90% outline', async () => {
    const { event, truth } = simulateEvent(1);
    const { map, summary } = await runScan(async (pixels) => pixels.map((pixel) => evaluatePixel({ pixel, event })), { nside: 4, refineNside: 16 }, truth.direction);
    const svg = renderSkyMapSvg(map, summary, { title: 'seed 1 <demo> & co', cellPx: 4 });
    const names = checkWellFormed(svg);
    expect(names[0]).toBe('svg');
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    expect(svg).toContain('seed 1 &lt;demo&gt; &amp; co');
    expect(names.filter((n) => n === 'rect').length).toBeGreaterThan(500);
    expect(svg).toContain('stroke="#ff2d2d"'); // best-fit cross
    expect(svg).toContain('stroke="#00e5ff"'); // truth circle
    expect(svg).toMatch(/<path d="M[^"]*" fill="none" stroke="#ffffff" stroke-width="1.2"\/>/); // region outline
    expect(svg).toContain('linearGradient');
    expect(svg).toContain(`RA ${summary.best.ra.toFixed(2)}°`);
  });
});
