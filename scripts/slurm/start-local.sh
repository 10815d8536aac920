#!/usr/bin/env bash
# A one-node Slurm on this machine, for the sweep tests (test/slurm/, npm run test:slurm) and for trying the slurm
# executor: installs Debian's slurm-wlm and munge when missing (as root), writes /etc/slurm/slurm.conf for localhost (state under
# $PRUNEKIT_SLURM_DIR, default /tmp/prunekit-slurm), starts munged, slurmctld and slurmd, and waits until the node is idle.
# No cgroups (containers have none to give): processes are tracked by process group. scripts/slurm/stop-local.sh undoes it.
set -euo pipefail
dir=${PRUNEKIT_SLURM_DIR:-/tmp/prunekit-slurm}
conf=/etc/slurm/slurm.conf
marker='# written by prunekit scripts/slurm/start-local.sh'

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
fi
if [ -e "$conf" ] && ! grep -qF "$marker" "$conf"; then
  echo "start-local.sh: $conf exists and was not written by this script; not touching it" >&2
  exit 1
fi

mkdir -p "$dir"/{state,spool,log,munge} /etc/slurm
chown munge:munge "$dir/munge"
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
host=$(hostname -s)
cat > "$conf" <<CONF
$marker (state in $dir)
ClusterName=prunekit-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
KillWait=10
DefMemPerCPU=$(( mem / cpus ))
MinJobAge=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
printf '%s\n' "$dir" > /etc/slurm/.prunekit-local

if ! pgrep -u munge -x munged >/dev/null; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged --pid-file="$dir/munge/munged.pid"
fi
/usr/sbin/slurmctld
/usr/sbin/slurmd
for _ in $(seq 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
    echo "slurm: one node ($host, $cpus CPUs, ${mem} MB) idle; config $conf, state and logs in $dir"
    exit 0
  fi
  sleep 1
done
echo "start-local.sh: the node did not become idle in 60 s; see $dir/log" >&2
sinfo >&2 || true
exit 1
