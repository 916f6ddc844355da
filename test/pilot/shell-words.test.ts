/** Word splitting of task args: a POSIX shell's quote rules (as Python's shlex.split), nothing expanded. */
import { describe, expect, test } from 'vitest';
import { ShellWordsError, splitShellWords } from '../../pilot/shell-words.js';

describe('splitShellWords', () => {
  test.each([
    ['cp {{INFILE}} {{OUTFILE}}', ['cp', '{{INFILE}}', '{{OUTFILE}}']],
    ['  a \t b\n c  ', ['a', 'b', 'c']],
    [`sh -c 'echo "$HOME"; ls | wc -l'`, ['sh', '-c', 'echo "$HOME"; ls | wc -l']],
    [`"a b"'c d'e`, ['a bc de']],
    [`"x \\" \\$ \\\\ \\a"`, ['x " \\$ \\ \\a']], // shlex.split keeps the backslash before $ (a shell would not)
    [`a\\ b c\\'d`, ['a b', "c'd"]],
    [`'' ""`, ['', '']],
    [`$(rm -rf /) \`id\` ; && > out *`, ['$(rm', '-rf', '/)', '`id`', ';', '&&', '>', 'out', '*']],
    ['one\\\ntwo', ['one\ntwo']], // shlex.split: no line continuation
    ['echo "a\\\nb" "\\`x\\`"', ['echo', 'a\\\nb', '\\`x\\`']],
    ["'multi\nline'", ['multi\nline']],
    ['', []],
  ])('%j', (line, words) => {
    expect(splitShellWords(line)).toEqual(words);
  });

  test.each([`'open`, `"open`, 'trailing\\'])('%j is refused with a hint', (line) => {
    expect(() => splitShellWords(line)).toThrow(ShellWordsError);
  });
});
