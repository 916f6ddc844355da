/** A small well-formedness check for the SVG the sky-scan demo writes (no XML library needed). */

/**
 * Check that `text` is a well-formed XML document with one root element: tags nest and close, attributes
 * are quoted and unique, `&` only starts an entity, `<` only starts markup (and `>` never appears inside
 * an attribute value, which this simple scanner would misread). Returns the element names.
 */
export function checkWellFormed(text: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  let i = 0;
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, '');
  const fail = (why: string): never => {
    throw new Error(`${why} at offset ${i}: ${JSON.stringify(body.slice(Math.max(0, i - 40), i + 40))}`);
  };
  const checkText = (t: string) => {
    if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(t)) fail('bare &');
  };
  while (i < body.length) {
    const lt = body.indexOf('<', i);
    if (lt === -1) {
      if (body.slice(i).trim()) fail('text after the root element');
      break;
    }
    checkText(body.slice(i, lt));
    if (stack.length === 0 && body.slice(i, lt).trim()) fail('text outside the root element');
    i = lt;
    const gt = body.indexOf('>', i);
    if (gt === -1) fail('unclosed tag');
    const tag = body.slice(i + 1, gt);
    if (tag.includes('<')) fail('< inside a tag');
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      if (stack.pop() !== name) fail(`</${name}> closes the wrong element`);
    } else {
      const selfClosing = tag.endsWith('/');
      const inner = selfClosing ? tag.slice(0, -1) : tag;
      const m = /^([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*="[^"<]*")*)\s*$/.exec(inner);
      if (!m) fail(`malformed tag <${tag.slice(0, 60)}>`);
      const [, name, attrs] = m as unknown as [string, string, string];
      const attrNames = [...attrs.matchAll(/([A-Za-z_][\w:.-]*)="([^"]*)"/g)].map((a) => {
        checkText(a[2] as string);
        return a[1] as string;
      });
      if (new Set(attrNames).size !== attrNames.length) fail(`duplicate attribute in <${name}>`);
      if (stack.length === 0) roots++;
      names.push(name);
      if (!selfClosing) stack.push(name);
    }
    i = gt + 1;
  }
  if (stack.length > 0) throw new Error(`unclosed elements: ${stack.join(' > ')}`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
  return names;
}
