#!/bin/sh
# The boot loader, for RAUC's "custom" backend in it_rauc.sh: a test cannot
# run U-Boot or GRUB, so this script keeps their environment in a file and
# makes their choice at each boot, as U-Boot does with bootcount and
# upgrade_available: a slot just installed is tried once; if it is not
# marked good before the next boot, the other slot boots.
#
#   get-primary | set-primary SLOT | get-state SLOT | set-state SLOT good|bad
#       (RAUC's custom backend interface; SLOT is a bootname, A or B)
#   boot    (the test's "power on": prints the bootname that starts)
set -eu
E=${RAUC_BOOTENV:?}
[ -f "$E" ] || printf 'ORDER="A B"\nA_OK=1\nB_OK=1\nTRIAL=\nTRIED=0\n' >"$E"
. "$E"
save() {
    printf 'ORDER="%s"\nA_OK=%s\nB_OK=%s\nTRIAL=%s\nTRIED=%s\n' "$ORDER" "$A_OK" "$B_OK" \
        "$TRIAL" "$TRIED" >"$E.tmp" && mv "$E.tmp" "$E"
}
ok_of() { if [ "$1" = A ]; then echo "$A_OK"; else echo "$B_OK"; fi; }
set_ok() { if [ "$1" = A ]; then A_OK=$2; else B_OK=$2; fi; }
check() { case "$1" in A | B) ;; *) echo "no slot '$1'" >&2; exit 1 ;; esac; }
primary() {
    for s in $ORDER; do
        [ "$(ok_of "$s")" = 1 ] || continue
        [ "$s" = "$TRIAL" ] && [ "$TRIED" = 1 ] && continue
        echo "$s"
        return 0
    done
    return 1
}
case "$1" in
get-primary) primary ;;
set-primary)
    check "$2"
    if [ "$2" = A ]; then ORDER="A B"; else ORDER="B A"; fi
    set_ok "$2" 1; TRIAL=$2; TRIED=0; save ;;
get-state) check "$2"; if [ "$(ok_of "$2")" = 1 ]; then echo good; else echo bad; fi ;;
set-state)
    check "$2"
    if [ "$3" = good ]; then set_ok "$2" 1; else set_ok "$2" 0; fi
    [ "$TRIAL" = "$2" ] && TRIAL=
    save ;;
boot)
    s=$(primary)
    [ "$s" = "$TRIAL" ] && TRIED=1
    save
    echo "$s" ;;
*) exit 1 ;;
esac
