#!/bin/sh
# test_exec_rootfs.sh OUT: the vm exec tests' image, an ext4 root filesystem
# (64 MiB, sparse) with busybox and its applets, /etc/passwd and /etc/group
# (root, nobody, a user in two groups), and a page for busybox httpd.
set -eu
out=$1
bb=$(command -v busybox || echo /bin/busybox)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/root" "$tmp/home/user" "$tmp/www" "$tmp/dev" "$tmp/proc" "$tmp/sys" \
	"$tmp/run" "$tmp/data"
mkdir -m 1777 "$tmp/tmp"
cp "$bb" "$tmp/bin/busybox"
for a in $("$bb" --list); do
	[ "$a" = busybox ] || ln -s busybox "$tmp/bin/$a"
done
cat >"$tmp/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:a user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$tmp/etc/group" <<'G'
root:x:0:
wheel:x:10:user
audio:x:29:root,user
user:x:1000:
nogroup:x:65534:
G
echo 'served from the guest' >"$tmp/www/index.html"
chown -R 1000:1000 "$tmp/home/user"
rm -f "$out"
truncate -s 64M "$out"
mke2fs -q -F -t ext4 -L smroot -d "$tmp" "$out"
