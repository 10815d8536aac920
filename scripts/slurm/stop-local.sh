#!/usr/bin/env bash
# Stops what scripts/slurm/start-local.sh started (slurmd, slurmctld, munged) and removes its config and state.
set -uo pipefail
conf=/etc/slurm/slurm.conf
dir=$(cat /etc/slurm/.prunekit-local 2>/dev/null || echo "${PRUNEKIT_SLURM_DIR:-/tmp/prunekit-slurm}")
stop() { # pid file, name
  [ -s "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  echo "stop-local.sh: $2 ($pid) still running after 10 s; killing it" >&2
  kill -9 "$pid" 2>/dev/null
}
stop "$dir/slurmd.pid" slurmd
stop "$dir/slurmctld.pid" slurmctld
stop "$dir/munge/munged.pid" munged
if grep -qF '# written by prunekit scripts/slurm/start-local.sh' "$conf" 2>/dev/null; then rm -f "$conf" /etc/slurm/.prunekit-local; fi
rm -rf "$dir"
echo "slurm: stopped"
