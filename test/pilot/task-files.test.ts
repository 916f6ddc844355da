/** Event ids become directory names that cannot escape the data directory or collide. */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { safeDirName, TaskFiles } from '../../pilot/task-files.js';

describe('safeDirName', () => {
  test('plain ids are kept as they are', () => {
    expect(safeDirName('3f2b9c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f')).toBe('3f2b9c1e-1a2b-4c3d-8e9f-0a1b2c3d4e5f');
    expect(safeDirName('event_42.v2')).toBe('event_42.v2');
  });

  test.each(['..', '../../etc/passwd', '/abs/path', 'a/b', 'nul\0byte', '.hidden', '', ' ', 'data-hub', 'init', 'images', 'x'.repeat(500), 'é'])(
    '%j becomes one safe path component',
    (id) => {
      const name = safeDirName(id);
      expect(name).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/);
      expect(name.length).toBeLessThanOrEqual(100);
      expect(name).not.toBe('data-hub');
      expect(name).not.toBe('init');
    },
  );

  test('ids that clean up alike still get different names', () => {
    expect(safeDirName('a/b')).not.toBe(safeDirName('a_b/'));
    expect(safeDirName('x'.repeat(500))).not.toBe(safeDirName('x'.repeat(501)));
  });
});

describe('TaskFiles', () => {
  test('a name already in use gets a numbered sibling: two runs never share files', async () => {
    const files = new TaskFiles(join(mkdtempSync(join(tmpdir(), 'ewms-files-')), 'ewms-pilot-data'), '.in', '.json');
    await files.prepare();
    const a = await files.create('ev');
    const b = await files.create('ev');
    expect(a.root).not.toBe(b.root);
    expect(a.infile).toBe(join(a.taskIo, 'infile.in'));
    expect(b.outfile).toBe(join(b.taskIo, 'outfile.json'));
    expect(readdirSync(files.dataDir).sort()).toEqual(['data-hub', 'ev', 'ev.2']);
    await files.remove(a);
    expect(readdirSync(files.dataDir).sort()).toEqual(['data-hub', 'ev.2']);
  });
});
