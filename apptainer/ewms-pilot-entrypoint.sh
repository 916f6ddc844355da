#!/bin/sh
# The pilot image's entrypoint, and the job wrapper of the vanilla-universe submit template: starts an
# ewms pilot inside an HTCondor job laid out as the EWMS Task Management Service lays it out.
#
# - The job's directory is $_CONDOR_SCRATCH_DIR (HTCondor binds it into the container and starts there),
#   else $_CONDOR_JOB_IWD, else the working directory.
# - The TMS transfers ewms_htcondor_envfile.sh (one `export NAME=value` per setting, broker tokens
#   included) into that directory and submits the image with no executable: this script sources it.
#   The TMS writes `set -x` into the file, which would print every value, tokens included, to the job's
#   stderr: the file is sourced with its trace output discarded. A file that is not valid shell stops
#   the job (exit 2) without echoing any of it.
# - Task data lives in the job's directory (EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST, unless set), as
#   with the Python pilot's image.
# - With no arguments it runs `ewms-pilot`; arguments that start with `-` are the pilot's options;
#   anything else is the command to run (exec'd, so condor_rm and eviction signals reach the pilot and
#   its exit code is the job's).
set -eu

me=ewms-pilot-entrypoint
job_dir=${_CONDOR_SCRATCH_DIR:-${_CONDOR_JOB_IWD:-$PWD}}
env_file=$job_dir/ewms_htcondor_envfile.sh

if [ -f "$env_file" ]; then
  if ! sh -n "$env_file" 2>/dev/null; then
    echo "$me: $env_file is not a valid shell file; not starting the pilot (its content is not shown: it holds secrets)" >&2
    exit 2
  fi
  # Discard the trace `set -x` in the file would print, then make sure tracing is off for what follows.
  { . "$env_file"; } 2>/dev/null
  set +x
  echo "$me: loaded the pilot's settings from $env_file" >&2
else
  echo "$me: no $env_file; the pilot takes its settings from the environment as it is" >&2
fi

export EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST="${EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST:-$job_dir}"

if [ "$#" -eq 0 ]; then
  set -- ewms-pilot
else
  case "$1" in
    -*) set -- ewms-pilot "$@" ;;
  esac
fi
echo "$me: job directory $job_dir; starting: $*" >&2
exec "$@"
