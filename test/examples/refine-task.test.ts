/** The refinement task: the finer pixels of one coarse pixel, each evaluated as the coarse task evaluates one. */
import { describe, expect, test } from 'vitest';
import { EwmsError } from '../../common/errors.js';
import { childrenNest } from '../../examples/skyscan/healpix.js';
import { simulateEvent } from '../../examples/skyscan/likelihood.js';
import { evaluatePixel, evaluateRefinement } from '../../examples/skyscan/task.js';

describe('evaluateRefinement', () => {
  const { event } = simulateEvent(3);
  const coarse = evaluatePixel({ pixel: { nside: 4, pix: 17 }, event });

  test('every finer pixel inside the coarse one, in order, as the coarse task would evaluate it', () => {
    const pixels = childrenNest(4, 17, 16).map((pix) => ({ nside: 16, pix }));
    const results = evaluateRefinement({ coarse, pixels, event });
    expect(results).toHaveLength(16);
    expect(results[5]).toEqual(evaluatePixel({ pixel: pixels[5]!, event }));
  });

  test('a pixel outside its coarse pixel, or a request of the wrong shape, is refused', () => {
    expect(() => evaluateRefinement({ coarse, pixels: [{ nside: 16, pix: 0 }], event })).toThrow(EwmsError);
    expect(() => evaluateRefinement({ pixel: { nside: 4, pix: 1 }, event } as never)).toThrow(/not a refinement request/);
  });
});
