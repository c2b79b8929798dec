#!/bin/sh
# Builds build/supermachine.node, the Node-API addon (what `npm install`
# and `make node` run). Nothing is downloaded:
#   - Node-API headers: $NODE_API_HEADERS, else Node's own (PREFIX/include/node,
#     Debian: the nodejs or libnode-dev package), else the node-api-headers
#     npm package when it is installed;
#   - libsupermachine: $SUPERMACHINE_BUILD_DIR (a meson build tree), else the
#     checkout's ../../build, else an installed one found by pkg-config.
# The addon pins NAPI_VERSION 8 (src/addon.h): one build runs on Node 18 and later.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
say() { echo "supermachine-node: $*" >&2; }

headers=${NODE_API_HEADERS:-}
if [ -z "$headers" ]; then
	prefix=$(dirname "$(dirname "$(command -v node)")")
	for d in "$prefix/include/node" /usr/include/node /usr/local/include/node; do
		[ -f "$d/node_api.h" ] && { headers=$d; break; }
	done
fi
if [ -z "$headers" ]; then
	headers=$(node -p "require('path').dirname(require.resolve('node-api-headers/include/node_api.h'))" 2>/dev/null || true)
fi
[ -n "$headers" ] && [ -f "$headers/node_api.h" ] || {
	say "no node_api.h: install Node's headers (Debian: libnode-dev) or set NODE_API_HEADERS"; exit 1; }

build=${SUPERMACHINE_BUILD_DIR:-$root/build}
if [ -f "$build/src/lib/libsupermachine.so" ]; then
	build=$(cd "$build" && pwd)
	cflags="-I$root/include"
	libs="-L$build/src/lib -lsupermachine -Wl,-rpath,$build/src/lib"
	say "against the build tree $build"
elif pkg-config --exists supermachine 2>/dev/null; then
	cflags=$(pkg-config --cflags supermachine)
	libs=$(pkg-config --libs supermachine)
	say "against the installed libsupermachine $(pkg-config --modversion supermachine)"
else
	say "no libsupermachine: build the checkout (make build) or install it (pkg-config finds no supermachine)"
	exit 1
fi

mkdir -p "$here/build"
# shellcheck disable=SC2086
${CC:-cc} -std=gnu11 -O2 -g -fPIC -shared -pthread -Wall -Wextra -Werror -Wshadow -Wformat=2 \
	-Wstrict-prototypes -Wmissing-prototypes -I"$headers" $cflags "$here"/src/*.c \
	-o "$here/build/supermachine.node" $libs
say "built $here/build/supermachine.node"
