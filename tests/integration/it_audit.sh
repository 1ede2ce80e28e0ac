#!/usr/bin/env bash
# Integration: the hub's audit log is append-only and hash-chained;
# `mamorictl audit verify` names the first entry that was modified, removed
# or reordered, and exits 3. Tampering is done to the SQLite file directly,
# the way an intruder with file access would.
. "$(dirname "$0")/lib.sh"

hub_start "$T/data"
fleet_setup 3
for i in 0 1 2; do claim alice $i; done
for i in 0 1 2; do as op device lock "$(dev_id $i)" --reason "test $i" >/dev/null; done
check "fresh chain verifies" as admin audit verify
n=$(as admin audit list --limit 1000 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["entries"]))')
check "the chain has entries to tamper with ($n)" test "$n" -gt 10
check "the database refuses UPDATE on audit rows" fails hubsql "$DATA" "UPDATE audit SET reason='x' WHERE seq=3"
check "the database refuses DELETE of audit rows" fails hubsql "$DATA" "DELETE FROM audit WHERE seq=3"
hub_stop
# a pristine copy of the registry to go back to before each tampering, and
# tampering below the append-only triggers, as the database's owner (or
# whoever holds the file) can do it
if [ "$IT_STORE" = postgresql ]; then
    PGD=$(pg_dir "$DATA")
    pgadmin() { "$ROOT_DIR/scripts/pg.sh" psql "$PGD" -d postgres -qAt -v ON_ERROR_STOP=1 -c "$1"; }
    pgadmin "CREATE DATABASE pristine TEMPLATE mamori"
    restore_db() {
        pgadmin "DROP DATABASE mamori" && pgadmin "CREATE DATABASE mamori TEMPLATE pristine OWNER mamori"
    }
    tamper() { hubsql "$DATA" "ALTER TABLE audit DISABLE TRIGGER USER; $1"; }
else
    cp "$DATA/mamori.db" "$T/pristine.db"
    restore_db() { cp "$T/pristine.db" "$DATA/mamori.db"; rm -f "$DATA/mamori.db-wal" "$DATA/mamori.db-shm"; }
    tamper() { hubsql "$DATA" "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; $1"; }
fi
cp "$DATA/audit.head" "$T/pristine.head"
restore() { hub_stop 2>/dev/null; restore_db; cp "$T/pristine.head" "$DATA/audit.head"; }
verify_says() { # verify_says EXPECTED_EXIT PATTERN
    hub_start "$DATA" >/dev/null
    MAMORI_PASSWORD=$ADMIN_PW as admin login --user admin >/dev/null
    out=$(as admin audit verify); rc=$?
    hub_stop
    [ "$rc" = "$1" ] && grep -q "$2" <<<"$out" || { echo "# got rc=$rc: $out"; return 1; }
}

restore; tamper "UPDATE audit SET reason='routine' WHERE seq=7"
check "modified entry: named with its seq" verify_says 3 "first bad entry seq 7 (modified)"
restore; tamper "DELETE FROM audit WHERE seq=5"
check "removed entry: named with its seq" verify_says 3 "first bad entry seq 5 (removed)"
restore; tamper "UPDATE audit SET seq=1000 WHERE seq=4; UPDATE audit SET seq=4 WHERE seq=6; UPDATE audit SET seq=6 WHERE seq=1000;"
check "reordered entries: named with the seq" verify_says 3 "first bad entry seq 4 (reordered)"
restore
last=$(hubsql "$DATA" "SELECT max(seq) FROM audit")
tamper "DELETE FROM audit WHERE seq>=$((last - 1))"
check "entries cut off the end: detected even after the hub appended more" verify_says 3 "(truncated)"
check "the hub raised an alert at start" test "$(hubsql "$DATA" "SELECT count(*) FROM events WHERE kind='audit_tampered'")" -ge 1
restore
check "the untouched copy still verifies" verify_says 0 "intact"
finish
