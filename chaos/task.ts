/**
 * The task every chaos pilot runs (`/bin/sh task.sh {{INFILE}} {{OUTFILE}}`): a shell script, because a
 * shell starts in a millisecond where node takes fifty, and 10,000 events on two cores must not be mostly
 * interpreter start-up. The infile's first line is `<kind> <n> [<arg>]` (see events.ts).
 */
export const TASK_SCRIPT = `#!/bin/sh
# $1: infile, $2: outfile
read -r kind n arg < "$1"
case "$kind" in
  good) printf 'ok %s\\n' "$n" > "$2" ;;
  slow) sleep "$arg"; printf 'ok %s\\n' "$n" > "$2" ;;
  large) printf 'ok %s %s\\n' "$n" "$(wc -c < "$1" | tr -d ' ')" > "$2" ;;
  # Its environment goes to stderr, which the pilot dumps into its log: a secret there would show.
  poison) env >&2; echo "poison event $n fails on purpose" >&2; exit 3 ;;
  # A child that never ends: the pilot must stop the whole tree on timeout, on eviction, and when it dies.
  hang) sleep 3600 ;;
  bigout) head -c "$arg" /dev/urandom | base64 -w0 > "$2" ;;
  *) echo "unknown event kind '$kind'" >&2; exit 4 ;;
esac
`;
