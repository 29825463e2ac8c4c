# lockstep step: runs a step's command according to the release record, mounted
# (optionally) from the ConfigMap the gate reads. Called as
#   sh -c SCRIPT lockstep-step choose N FIRST_INSTALL_ARGV... UPGRADE_ARGV...
#     no release recorded (a first install): the first N words; else the rest;
#   sh -c SCRIPT lockstep-step post ARGV...
#     a post-rollout step: runs only when the record names this release
#     ($LOCKSTEP_TARGET), i.e. after the sync that rolled it out.
# Needs a POSIX shell and no API access. The argv is never evaluated by the shell.
state_dir=${LOCKSTEP_STATE_DIR:-/lockstep/state}
term=${LOCKSTEP_TERMINATION_LOG:-/dev/termination-log}
live=
if [ -f "$state_dir/release" ]; then
  IFS= read -r live < "$state_dir/release" || :
fi
mode=$1
shift
case $mode in
  choose)
    n=$1
    shift
    case $n in ''|*[!0-9]*) echo "lockstep step: internal: bad count '$n'" >&2; exit 2 ;; esac
    if [ -n "$live" ]; then
      shift "$n"
      echo "lockstep step: release $live is recorded: upgrade"
      exec "$@"
    fi
    total=$#
    i=0
    for word do
      if [ "$i" -lt "$n" ]; then set -- "$@" "$word"; fi
      i=$((i + 1))
    done
    shift "$total"
    echo "lockstep step: no release is recorded: first install"
    exec "$@" ;;
  post)
    if [ "$live" != "${LOCKSTEP_TARGET:-}" ]; then
      msg="lockstep step: the record holds '${live:-nothing}', not $LOCKSTEP_TARGET: this post-rollout step belongs to a sync that did not roll out $LOCKSTEP_TARGET; not running it"
      printf '%s\n' "$msg" >&2
      printf '%s\n' "$msg" > "$term" 2>/dev/null || :
      exit 1
    fi
    echo "lockstep step: release $live rolled out: running the post-rollout step"
    exec "$@" ;;
  *)
    echo "lockstep step: internal: unknown mode '$mode'" >&2
    exit 2 ;;
esac
