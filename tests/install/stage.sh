# Sourced by the install tests: `meson install` of the build under test
# into a temporary DESTDIR, and the examples built against that install
# with pkg-config, as a user of the installed library would.
#
#   stage_install SOURCE_ROOT BUILD_ROOT   sets TMP, STAGE (= TMP/stage + prefix) and
#                                          the dirs below; removes TMP on exit
#   stage_examples [STATIC=1]              builds examples/ into TMP/ex-shared or TMP/ex-static
#
# A sanitized build's library needs the sanitizer runtime in the program
# too: the examples get the build's -fsanitize flags.
set -euo pipefail
# meson test points LD_LIBRARY_PATH at the build tree: only the install counts here
unset LD_LIBRARY_PATH

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

stage_install() {
	SRC=$1
	BUILD=$2
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/sm-install.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
	# prefix, bindir, ... and the sanitizers, as this build was configured
	eval "$(meson introspect --buildoptions "$BUILD" | python3 -c '
import json, shlex, sys
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
for k in ("prefix", "bindir", "libdir", "libexecdir", "includedir", "datadir", "mandir", "b_sanitize"):
    v = opts[k]
    print("%s=%s" % (k.upper(), shlex.quote(v if k in ("prefix", "b_sanitize") or v.startswith("/") else opts["prefix"] + "/" + v)))
')"
	STAGE=$TMP/stage$PREFIX
	meson install -C "$BUILD" --destdir "$TMP/stage" --no-rebuild --quiet >"$TMP/install.log" 2>&1 ||
		{ cat "$TMP/install.log" >&2; fail "meson install --destdir failed"; }
	S_BIN=$TMP/stage$BINDIR
	S_LIB=$TMP/stage$LIBDIR
	S_WORKER=$TMP/stage$LIBEXECDIR/supermachine/supermachine-worker
	S_ASSETS=$TMP/stage$DATADIR/supermachine
	S_INCLUDE=$TMP/stage$INCLUDEDIR
	S_MAN=$TMP/stage$MANDIR/man1
	# the .pc as an install at STAGE would have it (DESTDIR keeps the real prefix)
	mkdir -p "$TMP/pkgconfig"
	sed "s|^prefix=.*|prefix=$STAGE|" "$S_LIB/pkgconfig/supermachine.pc" >"$TMP/pkgconfig/supermachine.pc"
	SAN_FLAGS=
	[ "$B_SANITIZE" = none ] || SAN_FLAGS="-fsanitize=$B_SANITIZE"
}

stage_examples() {
	local out=$TMP/ex-shared
	[ "${1:-}" = STATIC=1 ] && out=$TMP/ex-static
	mkdir -p "$out"
	PKG_CONFIG_PATH=$TMP/pkgconfig make -s -C "$SRC/examples" O="$out" "$@" \
		CFLAGS="-O1 -g $SAN_FLAGS" LDFLAGS="$SAN_FLAGS" >"$TMP/make.log" 2>&1 ||
		{ cat "$TMP/make.log" >&2; fail "examples did not build against the install ($*)"; }
	EX=$out
}
