# lockstep step (follows record.sh): runs a step's command as the release record says.
# Needs a POSIX shell and no API access; the argv is never evaluated by the shell.
# Called as
#   sh -c SCRIPT lockstep-step run N FIRST_INSTALL_ARGV... ARGV...
#     a migration, one-time step or downgrade ($LOCKSTEP_STEP):
#     - done already, it finishes at once: a one-time step the record lists; a migration
#       or downgrade when the record names this release ($LOCKSTEP_TARGET) and image
#       ($LOCKSTEP_IMAGE), unless LOCKSTEP_FORCE is true;
#     - else with no record (a first install) the first N words run, else the rest;
#     - a migration with no record is tried up to $LOCKSTEP_FIRST_INSTALL_ATTEMPTS times,
#       $LOCKSTEP_RETRY_SECONDS apart: a bundled database may still be starting;
#   sh -c SCRIPT lockstep-step post ARGV...
#     a post-rollout step: runs only when the record names this release
#     ($LOCKSTEP_TARGET), i.e. after the sync that rolled it out.
set -f
term=${LOCKSTEP_TERMINATION_LOG:-/dev/termination-log}
live= rec_image= rec_once=
if [ -n "$record_dir" ]; then
  IFS= read -r live < "$record_dir/release" || :
  if [ -f "$record_dir/image" ]; then IFS= read -r rec_image < "$record_dir/image" || :; fi
  if [ -f "$record_dir/one-time" ]; then IFS= read -r rec_once < "$record_dir/one-time" || :; fi
fi
mode=$1
shift
case $mode in
  run)
    n=$1
    shift
    case $n in ''|*[!0-9]*) echo "lockstep step: internal: bad count '$n'" >&2; exit 2 ;; esac
    step=${LOCKSTEP_STEP:-migration}
    name=${LOCKSTEP_STEP_NAME:-step}
    if [ "$step" = one-time ]; then
      for done_step in $rec_once; do
        if [ "$done_step" = "$name" ]; then
          echo "lockstep step: one-time step $name completed against this database before (the record $LOCKSTEP_RECORD lists it): not running it again"
          exit 0
        fi
      done
    elif [ "${LOCKSTEP_FORCE:-false}" != true ] && [ -n "$live" ] &&
      [ "$live" = "${LOCKSTEP_TARGET:-}" ] && [ "$rec_image" = "${LOCKSTEP_IMAGE:-}" ]; then
      echo "lockstep step: $name: the record $LOCKSTEP_RECORD says release $live with this image is migrated already: finishing without running it (render with --force-migrations to run it anyway)"
      exit 0
    fi
    attempts=1
    if [ -n "$live" ]; then
      shift "$n"
      echo "lockstep step: release $live is recorded: upgrade"
    else
      if [ "$n" -gt 0 ]; then
        total=$#
        i=0
        for word do
          if [ "$i" -lt "$n" ]; then set -- "$@" "$word"; fi
          i=$((i + 1))
        done
        shift "$total"
      fi
      echo "lockstep step: no release is recorded: first install"
      if [ "$step" = migration ]; then attempts=${LOCKSTEP_FIRST_INSTALL_ATTEMPTS:-1}; fi
    fi
    try=1
    while :; do
      "$@" && exit 0
      code=$?
      [ "$try" -lt "$attempts" ] || exit "$code"
      echo "lockstep step: $name failed (exit $code), attempt $try of $attempts on a first install (the database may still be starting); retrying in ${LOCKSTEP_RETRY_SECONDS:-10}s" >&2
      sleep "${LOCKSTEP_RETRY_SECONDS:-10}"
      try=$((try + 1))
    done ;;
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
