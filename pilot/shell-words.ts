/**
 * Split a command line into words the way Python's `shlex.split` (POSIX mode, which the Python ewms-pilot
 * uses) splits them — quotes and backslashes only, so a TASK_ARGS written for the Python pilot means the same. Nothing is ever expanded or executed:
 * `$VAR`, `$(…)`, backticks, `;`, `|`, `&`, globs and redirections stay literal characters of their word.
 */
import { EwmsError } from '../common/errors.js';

/** A command line that cannot be split (an unterminated quote or a trailing backslash). */
export class ShellWordsError extends EwmsError {}

const WHITESPACE = new Set([' ', '\t', '\n', '\r']);
/** Inside double quotes a backslash escapes only these (`shlex` in POSIX mode: the quote and the escape). */
const DOUBLE_QUOTE_ESCAPABLE = new Set(['"', '\\']);

/** Split `line` into its words. Throws `ShellWordsError` for an unterminated quote or escape. */
export function splitShellWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const ch = line[i]!;
    if (WHITESPACE.has(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i += 1;
      continue;
    }
    inWord = true;
    if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw unterminated('single quote', i);
      word += line.slice(i + 1, end);
      i = end + 1;
    } else if (ch === '"') {
      i += 1;
      for (;;) {
        if (i >= line.length) throw unterminated('double quote', i);
        const c = line[i]!;
        if (c === '"') break;
        if (c === '\\' && i + 1 < line.length && DOUBLE_QUOTE_ESCAPABLE.has(line[i + 1]!)) {
          word += line[i + 1];
          i += 2;
        } else {
          word += c;
          i += 1;
        }
      }
      i += 1;
    } else if (ch === '\\') {
      if (i + 1 >= line.length) throw unterminated('backslash escape', i);
      // As shlex: the next character is taken literally, a newline included (no line continuation).
      word += line[i + 1];
      i += 2;
    } else {
      word += ch;
      i += 1;
    }
  }
  if (inWord) words.push(word);
  return words;
}

function unterminated(what: string, at: number): ShellWordsError {
  return new ShellWordsError(
    `unterminated ${what} at character ${at + 1}`,
    "close the quote, or escape it with a backslash; quote rules are a POSIX shell's (no expansion is done)",
  );
}
