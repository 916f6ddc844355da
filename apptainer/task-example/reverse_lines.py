#!/usr/bin/env python3
"""Example EWMS task: reverse each line of the event.

The pilot writes the event to the file named by EWMS_TASK_INFILE and publishes whatever this writes to
EWMS_TASK_OUTFILE. Inside a task container both live in /ewms-pilot-data/task-io; the data hub shared
with the init command is EWMS_TASK_DATA_HUB_DIR. A non-zero exit marks the event as failed.
"""
import os
import sys


def main() -> int:
    infile = os.environ.get("EWMS_TASK_INFILE")
    outfile = os.environ.get("EWMS_TASK_OUTFILE")
    if not infile or not outfile:
        print("EWMS_TASK_INFILE and EWMS_TASK_OUTFILE must be set (the pilot sets them)", file=sys.stderr)
        return 2
    with open(infile, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(outfile, "w", encoding="utf-8") as f:
        f.writelines(line[::-1] + "\n" for line in lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
