# shellcheck shell=bash
# Waiting for a condition, bounded: the one shell copy, sourced by CI
# (.ci/run) and the scripts under loadtest/ and observability/ (the Python
# scripts' is waiting.py). Never a fixed sleep standing in for a condition:
# a slower or busier machine only waits longer.
#
# wait_until SECONDS WHAT COMMAND...: runs COMMAND (a program or a shell
# function; its output discarded) every 0.2 s until it succeeds. At the
# deadline: the last lines of each file in $WAIT_LOGS (space-separated), then
# "${WAIT_FAILED_PREFIX}WHAT: not within SECONDS s" on stderr, and exit 1.
wait_until() {
  local secs=$1 what=$2 log
  shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for log in ${WAIT_LOGS:-}; do
        [ -f "$log" ] && { echo "--- the end of $log" >&2; tail -n 30 "$log" >&2; }
      done
      echo "${WAIT_FAILED_PREFIX:-}$what: not within ${secs} s" >&2
      exit 1
    fi
    sleep 0.2
  done
}
