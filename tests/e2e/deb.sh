#!/usr/bin/env bash
# The Debian package (cpack -G DEB of a CTCT_STATIC build): its contents, its unit, and dpkg -i into an empty
# root; then the installed binary runs features and selftest in a chroot with no library (tests/e2e/portable.sh).
# usage: deb.sh BUILD_DIR   (root; BUILD_DIR configured with -DCTCT_STATIC=ON and built)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
B=${1:?static build dir}
trap cleanup EXIT INT TERM
(cd "$B" && cpack -G DEB >/dev/null) || not_ok "cpack -G DEB"
deb=$(ls "$B"/ctconfirm-trace_*_amd64.deb | head -1)
list=$(dpkg-deb -c "$deb")
for f in ./usr/bin/ctconfirm-trace ./usr/lib/systemd/system/ctconfirm-trace.service \
	 ./usr/share/man/man1/ctconfirm-trace.1.gz ./etc/default/ctconfirm-trace; do
	check "package holds $f" "$(grep -c " $f\$" <<<"$list")" 1
done
check "Depends: none" "$(dpkg-deb -f "$deb" Depends)" ""
check "conffile /etc/default/ctconfirm-trace" "$(dpkg-deb -I "$deb" conffiles)" /etc/default/ctconfirm-trace
r=$WORK/dpkgroot
mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates"
: >"$r/var/lib/dpkg/status"
dpkg --root="$r" --log=/dev/null -i "$deb" >/dev/null
check "dpkg -i into an empty root" "$?" 0
check "dpkg -s: installed" "$(dpkg --root="$r" -s ctconfirm-trace | grep -c '^Status: install ok installed')" 1
if command -v systemd-analyze >/dev/null; then
	# against this host's units; ExecStart pointed at the installed binary, which this host's /usr/bin lacks
	sed "s|/usr/bin/ctconfirm-trace|$r/usr/bin/ctconfirm-trace|" "$r/usr/lib/systemd/system/ctconfirm-trace.service" \
		>"$WORK/ctconfirm-trace.service"
	v=$(systemd-analyze verify --man=no "$WORK/ctconfirm-trace.service" 2>&1)
	check "systemd-analyze verify the unit: no complaint" "$v" ""
fi
bash "$(dirname "$0")/portable.sh" "$r/usr/bin/ctconfirm-trace" || not_ok "installed binary: portable.sh"
finish
