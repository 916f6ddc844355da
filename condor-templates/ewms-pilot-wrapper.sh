#!/bin/sh
# Starts an ewms pilot inside an HTCondor job: loads the pilot's environment from the env file that was
# transferred with the job (it holds the broker token, so it is never put on a command line or in the job
# ad), then replaces itself with the pilot command given as arguments, so signals (condor_rm, eviction)
# reach the pilot directly and its exit code is the job's.
set -eu
envfile="${_CONDOR_SCRATCH_DIR:-.}/ewms_htcondor_envfile.sh"
if [ ! -r "$envfile" ]; then
  echo "ewms-pilot-wrapper: $envfile is missing; was it listed in transfer_input_files?" >&2
  exit 2
fi
. "$envfile"
exec "$@"
