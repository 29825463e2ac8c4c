# lockstep: which release record to read. The record is written twice, by hooks that run
# only after every migration and one-time step succeeded: $LOCKSTEP_RECORD, then
# $LOCKSTEP_RECORD-backup. Each is deleted and created again when written (the hook
# delete policy), so at any moment at least one of them holds a complete record once any
# was written; the first that holds one is read. Both are mounted optionally, read-only.
#   LOCKSTEP_STATE_DIR     where $LOCKSTEP_RECORD is mounted (default /lockstep/state)
#   LOCKSTEP_BACKUP_DIR    where $LOCKSTEP_RECORD-backup is mounted (default /lockstep/state-backup)
# Sets record_dir (empty: no record, a first install against this database).
record_dir=
for d in "${LOCKSTEP_STATE_DIR:-/lockstep/state}" "${LOCKSTEP_BACKUP_DIR:-/lockstep/state-backup}"; do
  if [ -f "$d/release" ]; then
    record_dir=$d
    break
  fi
done
