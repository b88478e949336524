#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the tests and for trying `--site slurm-local`.
#
#   scripts/slurm-cluster.sh start    configure and start munged, slurmctld and slurmd; wait for the node
#   scripts/slurm-cluster.sh stop     cancel every job, wait for them to end, stop the daemons by PID
#   scripts/slurm-cluster.sh status   sinfo and squeue of the cluster
#
# Everything (slurm.conf, state, logs, PID files) lives in $AUTOPIPE_SLURM_DIR (default /tmp/autopipe-slurm);
# nothing under /etc is changed. SLURM's commands find the cluster through SLURM_CONF: `start` prints the
# export line. Needs root and Debian's packages (SLURM 22.05):
#   apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
# No systemd and no cgroups are needed: processes are tracked through /proc (proctrack/linuxproc).
set -euo pipefail

DIR=${AUTOPIPE_SLURM_DIR:-/tmp/autopipe-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

die() { echo "slurm-cluster: $*" >&2; exit 1; }

# A process that has exited but is not yet reaped (a zombie: its parent, init here, may be slow) counts as gone.
running() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

alive() { [ -f "$DIR/$1.pid" ] && running "$(cat "$DIR/$1.pid")"; }

write_conf() {
  local host topology
  host=$(hostname -s)
  topology=$(slurmd -C | head -n 1)  # NodeName=<host> CPUs=.. Boards=.. ...: a bare CPUs=N is refused
  cat > "$CONF" <<EOF
# Written by scripts/slurm-cluster.sh: a single-node test cluster without systemd or cgroups.
ClusterName=autopipe
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
KillWait=2
MinJobAge=30
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/spool/slurmctld.pid
SlurmdPidFile=$DIR/spool/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
$topology NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    return  # a munged is already serving this machine: share it, and leave it running on stop
  fi
  [ -f /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing (reinstall the munge package)"
  mkdir -p /run/munge && chown munge:munge /run/munge
  # munged refuses to run as root with a key owned by munge; --foreground keeps its PID ours to stop.
  setsid runuser -u munge -- /usr/sbin/munged --foreground >"$DIR/log/munged.log" 2>&1 &
  echo $! > "$DIR/munged.pid"
  for _ in $(seq 50); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
    sleep 0.1
  done
  die "munged did not start; see $DIR/log/munged.log"
}

start() {
  [ "$(id -u)" = 0 ] || die "needs root (slurmd runs jobs as their users)"
  for program in slurmctld slurmd sbatch munged; do
    command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ] ||
      die "$program not found; apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
  done
  if alive slurmctld && alive slurmd; then
    echo "export SLURM_CONF=$CONF"
    return
  fi
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  write_conf
  start_munge
  setsid /usr/sbin/slurmctld -D -i -f "$CONF" >"$DIR/log/slurmctld.out" 2>&1 &
  echo $! > "$DIR/slurmctld.pid"
  setsid /usr/sbin/slurmd -D -f "$CONF" >"$DIR/log/slurmd.out" 2>&1 &
  echo $! > "$DIR/slurmd.pid"
  for _ in $(seq 300); do
    if [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; then
      echo "export SLURM_CONF=$CONF"
      return
    fi
    sleep 0.1
  done
  stop >&2
  die "the node did not become idle within 30 s; see $DIR/log/"
}

stop_pid() {
  local name=$1
  alive "$name" || { rm -f "$DIR/$name.pid"; return 0; }
  local pid
  pid=$(cat "$DIR/$name.pid")
  kill "$pid"
  for _ in $(seq 100); do
    running "$pid" || break
    sleep 0.1
  done
  if running "$pid"; then kill -9 "$pid"; fi
  rm -f "$DIR/$name.pid"
}

# Processes of this cluster's jobs (and their slurmstepd) that outlived the queue: found by the SLURM_CONF
# they inherited, never by name, so another cluster's or the user's own processes are left alone.
job_processes() {
  local proc
  for proc in /proc/[0-9]*; do
    tr '\0' '\n' < "$proc/environ" 2>/dev/null | grep -qx "SLURM_CONF=$CONF" || continue
    if [ "$(cat "$proc/comm" 2>/dev/null)" = slurmstepd ] ||
       tr '\0' '\n' < "$proc/environ" 2>/dev/null | grep -q '^SLURM_JOB_ID='; then
      echo "${proc#/proc/}"
    fi
  done
}

stop() {
  if alive slurmctld; then
    for _ in $(seq 150); do  # cancel until the queue is empty: a job may submit another as it ends
      jobs=$(squeue -h -o %i 2>/dev/null)
      [ -z "$jobs" ] && break
      echo "$jobs" | xargs -r scancel 2>/dev/null
      sleep 0.2
    done
  fi
  stop_pid slurmd
  stop_pid slurmctld
  stop_pid munged
  leftovers=$(job_processes)
  if [ -n "$leftovers" ]; then
    echo "slurm-cluster: killing job processes left behind: $(echo $leftovers)" >&2
    kill -9 $leftovers 2>/dev/null || true
  fi
}

status() {
  sinfo
  squeue
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status   (state in \$AUTOPIPE_SLURM_DIR, default /tmp/autopipe-slurm)" >&2; exit 2 ;;
esac
