import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { checkHostDirectories, validateBindMounts, validateTaskEnv } from '../../pilot/runtime/mounts.js';
import { RuntimeSetupError } from '../../pilot/runtime/types.js';

const rw = (source: string, target: string) => ({ source, target, readOnly: false });
const ro = (source: string, target: string) => ({ source, target, readOnly: true });

function refusal(fn: () => unknown): RuntimeSetupError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RuntimeSetupError);
    expect((err as RuntimeSetupError).hint.length).toBeGreaterThan(10);
    return err as RuntimeSetupError;
  }
  throw new Error('expected a RuntimeSetupError');
}

describe('validateBindMounts', () => {
  test('accepts the pilot\'s own binds and read-only external dirs, normalising paths', () => {
    expect(
      validateBindMounts([
        rw('/scratch/ewms-pilot-data/data-hub/', '/ewms-pilot-data/data-hub'),
        ro('/cvmfs/icecube.opensciencegrid.org/./data', '/cvmfs/icecube.opensciencegrid.org/data'),
        ro('/usr/share/zoneinfo', '/usr/share/zoneinfo'),
        rw('/scratch/a/../ewms-pilot-data/ev/task-io', '/ewms-pilot-data/task-io'),
      ]),
    ).toEqual([
      rw('/scratch/ewms-pilot-data/data-hub', '/ewms-pilot-data/data-hub'),
      ro('/cvmfs/icecube.opensciencegrid.org/data', '/cvmfs/icecube.opensciencegrid.org/data'),
      ro('/usr/share/zoneinfo', '/usr/share/zoneinfo'),
      rw('/scratch/ewms-pilot-data/ev/task-io', '/ewms-pilot-data/task-io'),
    ]);
  });

  test.each([
    ['relative source', rw('data/hub', '/hub'), /absolute/],
    ['relative target', rw('/data/hub', 'hub'), /absolute/],
    ['empty source', rw('', '/hub'), /absolute/],
    ['comma in a path', rw('/data/a,b', '/hub'), /comma/],
    ['double quote in a path', rw('/data/a"b', '/hub'), /double quote/],
    ['newline in a path', rw('/data/a\nb', '/hub'), /newline/],
  ])('refuses a %s', (_name, bind, message) => {
    expect(refusal(() => validateBindMounts([bind])).message).toMatch(message);
  });

  test.each(['/proc', '/proc/1/root', '/dev', '/dev/shm', '/sys', '/sys/fs/cgroup', '/run', '/run/user/0', '/boot', '/boot/efi'])(
    'refuses %s as a source, read-only or not, and as a target',
    (path) => {
      expect(refusal(() => validateBindMounts([ro(path, '/data')])).message).toMatch(/kernel or boot/);
      expect(refusal(() => validateBindMounts([rw(path, '/data')])).message).toMatch(/kernel or boot/);
      expect(refusal(() => validateBindMounts([ro('/data', path)])).message).toMatch(/kernel or boot/);
    },
  );

  test('refuses the root itself, and a path that only normalises into a forbidden one', () => {
    expect(refusal(() => validateBindMounts([ro('/', '/host')])).message).toMatch(/whole filesystem/);
    expect(refusal(() => validateBindMounts([ro('/data/../proc', '/p')])).message).toMatch(/\/proc/);
  });

  test('does not mistake a sibling for a forbidden dir (/devices, /runner)', () => {
    expect(validateBindMounts([rw('/devices/x', '/a'), rw('/runner/x', '/b')])).toHaveLength(2);
  });

  test.each(['/etc', '/etc/ssl', '/usr/local', '/bin', '/sbin', '/lib', '/lib64', '/opt/software', '/root/data', '/var/log'])(
    'system dir %s: read-only accepted, writable refused',
    (path) => {
      expect(validateBindMounts([ro(path, '/mnt/x')])).toEqual([ro(path, '/mnt/x')]);
      expect(refusal(() => validateBindMounts([rw(path, '/mnt/x')])).message).toMatch(/read-only/);
    },
  );

  test('scratch locations under /var may be writable (HTCondor execute dir, /var/tmp)', () => {
    expect(
      validateBindMounts([
        rw('/var/lib/condor/execute/dir_1234/ewms-pilot-data/data-hub', '/ewms-pilot-data/data-hub'),
        rw('/var/tmp/pilot/task-io', '/ewms-pilot-data/task-io'),
      ]),
    ).toHaveLength(2);
    expect(refusal(() => validateBindMounts([rw('/var/lib/condor', '/x')])).message).toMatch(/read-only/);
  });

  test.each(['/etc', '/usr/lib', '/bin', '/var', '/root', '/lib64/x'])('refuses a writable bind onto container path %s', (target) => {
    expect(refusal(() => validateBindMounts([rw('/scratch/x', target)])).message).toMatch(/belongs to the image/);
    expect(validateBindMounts([ro('/scratch/x', target)])).toHaveLength(1);
  });

  test('refuses duplicate targets, also when they differ only by normalisation', () => {
    const err = refusal(() =>
      validateBindMounts([rw('/scratch/a', '/ewms-pilot-data/task-io'), ro('/cvmfs/b', '/ewms-pilot-data/task-io/')]),
    );
    expect(err.message).toMatch(/same container path \/ewms-pilot-data\/task-io/);
  });
});

describe('checkHostDirectories', () => {
  const root = mkdtempSync(join(tmpdir(), 'ewms-mounts-'));
  mkdirSync(join(root, 'data'));
  writeFileSync(join(root, 'file.txt'), 'x');
  symlinkSync('/proc/self', join(root, 'sneaky'));
  symlinkSync(join(root, 'data'), join(root, 'alias'));

  test('resolves existing directories (symlinks to their target)', async () => {
    expect(await checkHostDirectories([join(root, 'data'), join(root, 'alias')])).toEqual([join(root, 'data'), join(root, 'data')]);
  });

  test('refuses a missing path, a file, and a symlink into /proc', async () => {
    await expect(checkHostDirectories([join(root, 'missing')])).rejects.toThrow(/does not exist/);
    await expect(checkHostDirectories([join(root, 'file.txt')])).rejects.toThrow(/not a directory/);
    await expect(checkHostDirectories([join(root, 'sneaky')])).rejects.toThrow(/resolves to \/proc/);
    await expect(checkHostDirectories(['relative/dir'])).rejects.toBeInstanceOf(RuntimeSetupError);
  });
});

describe('validateTaskEnv', () => {
  test('keeps valid names and any string value, including commas, quotes and newlines', () => {
    const env = { A: '1', _private: 'x', camelCase9: 'a,b "c"\nd', EMPTY: '' };
    expect(validateTaskEnv(env)).toEqual(env);
  });

  test.each(['1ABC', 'A-B', 'A B', 'A=B', '', 'ÄÖ', 'A.B'])('refuses the name %j', (name) => {
    expect(refusal(() => validateTaskEnv({ [name]: 'v' })).message).toMatch(/invalid environment variable name/);
  });

  test('refuses a NUL byte and a non-string value', () => {
    expect(refusal(() => validateTaskEnv({ A: 'x\0y' })).message).toMatch(/NUL/);
    expect(refusal(() => validateTaskEnv({ A: 5 } as unknown as Record<string, string>)).message).toMatch(/not a string/);
  });
});
