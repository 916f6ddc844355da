// Shared by the condor_submit / condor_q / condor_rm stand-ins: a tiny job queue kept in a JSON file under
// $EWMS_CONDOR_STANDIN_DIR, and a call log (one JSON line per call) the tests read back.
const fs = require('node:fs');
const path = require('node:path');

const dir = process.env.EWMS_CONDOR_STANDIN_DIR;
if (!dir) {
  process.stderr.write('stand-in: EWMS_CONDOR_STANDIN_DIR is not set\n');
  process.exit(90);
}
const stateFile = path.join(dir, 'queue.json');

function load() {
  try {
    return JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  } catch {
    return { nextCluster: 100, jobs: [] };
  }
}
function save(state) {
  fs.writeFileSync(stateFile, JSON.stringify(state));
}
function record(entry) {
  fs.appendFileSync(path.join(dir, 'calls.jsonl'), `${JSON.stringify({ ...entry, at: Date.now() })}\n`);
}
/** -name/-pool first, as the coordinator passes them; returns the rest. */
function splitLocation(args) {
  const location = {};
  const rest = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '-name' || args[i] === '-pool') location[args[i].slice(1)] = args[++i];
    else rest.push(args[i]);
  }
  return { location, rest };
}
function fail(message, code = 1) {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}
module.exports = { load, save, record, splitLocation, fail };
