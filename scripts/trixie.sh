#!/usr/bin/env bash
# A Debian 13 (trixie) chroot with libtorch 2.6, for the second CI leg and for building the
# libtorch-2.6 prebuild on a Debian 12 host. Needs root and Debian's package servers only.
#
#   scripts/trixie.sh ensure            create the chroot, or reuse it when it is complete
#   scripts/trixie.sh sync              copy this checkout (tracked and unignored files) into it
#   scripts/trixie.sh exec 'COMMAND'    run COMMAND in the copied checkout inside the chroot
#   scripts/trixie.sh path              print the checkout's path on the host side
#
# The chroot lives in $INP_FORMER_TRIXIE (default /var/cache/inp-former/trixie) so that later
# runs on the same machine reuse it (~3 minutes to make). ../shared is bind-mounted read-only
# beside the copied checkout, as it sits beside this one; proc, /dev and /sys are mounted for
# the duration of each `exec` and unmounted after.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ROOTFS=${INP_FORMER_TRIXIE:-/var/cache/inp-former/trixie}
WORK=/work/inp-former               # the checkout's path inside the chroot
SHARED_SRC=$(cd "$REPO/.." && pwd)/shared
# python3-torch: the suite cross-checks saved files with Python's torch.load, as on Debian 12.
PACKAGES="libtorch-dev libopenblas0-pthread python3-torch nodejs npm cmake g++ make git ca-certificates python3 patchelf redis-server chromium fonts-dejavu-core"
STAMP="$ROOTFS/.inp-former-ready"

log() { echo "trixie: $*" >&2; }

ensure() {
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PACKAGES" ]; then
    log "reusing $ROOTFS"
    return
  fi
  command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  }
  if [ ! -x "$ROOTFS/usr/bin/apt-get" ]; then
    log "debootstrap into $ROOTFS"
    rm -rf "$ROOTFS"
    mkdir -p "$ROOTFS"
    debootstrap --variant=minbase trixie "$ROOTFS" http://deb.debian.org/debian >/dev/null
  fi
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  mkdir -p "$ROOTFS/etc/ssl/certs"
  in_chroot / "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null"
  echo "$PACKAGES" > "$STAMP"
  log "ready: $(in_chroot / 'dpkg-query -W -f="\${Package} \${Version}\n" libtorch-dev nodejs | tr "\n" " "')"
}

mount_all() {
  mountpoint -q "$ROOTFS/proc" || mount -t proc proc "$ROOTFS/proc"
  mountpoint -q "$ROOTFS/dev" || mount --rbind /dev "$ROOTFS/dev"
  mountpoint -q "$ROOTFS/sys" || mount --rbind /sys "$ROOTFS/sys"
  if [ -d "$SHARED_SRC" ]; then
    mkdir -p "$ROOTFS/work/shared"
    mountpoint -q "$ROOTFS/work/shared" || { mount --bind "$SHARED_SRC" "$ROOTFS/work/shared" && mount -o remount,bind,ro "$ROOTFS/work/shared"; }
  fi
}

umount_all() {
  for m in work/shared sys dev proc; do
    mountpoint -q "$ROOTFS/$m" && umount -R -l "$ROOTFS/$m" || true
  done
}

# in_chroot DIR COMMAND: run COMMAND with bash -c in DIR inside the chroot, mounts set up and
# always taken down again.
in_chroot() {
  local dir=$1 cmd=$2
  # One exec at a time: each unmounts proc, /dev and /sys when it ends.
  exec 9>"$ROOTFS/.inp-former-lock"
  flock 9
  mount_all
  trap umount_all EXIT
  # The host's CA bundle: it may hold a CA (a registry proxy's) that trixie's own bundle lacks.
  local ca=/etc/ssl/certs/host-ca-certificates.crt
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS$ca"
  local rc=0
  chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
    LANG=C.UTF-8 CI="${CI:-}" TERM="${TERM:-dumb}" \
    ${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} ${OPENBLAS_L2_SIZE:+OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE} \
    NODE_EXTRA_CA_CERTS=$ca npm_config_cafile=$ca npm_config_nodedir=/usr \
    npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false \
    bash -c "cd '$dir' && $cmd" || rc=$?
  umount_all
  trap - EXIT
  # release the lock: ensure calls this twice, the second time from a subshell, which would
  # otherwise wait for ever on the lock its own parent still holds
  exec 9>&-
  return $rc
}

sync_checkout() {
  [ -f "$STAMP" ] || { log "run 'scripts/trixie.sh ensure' first"; exit 1; }
  # A fresh copy each time: the chroot's node_modules and builds belong to libtorch 2.6 and
  # must not mix with the host's.
  rm -rf "$ROOTFS$WORK"
  mkdir -p "$ROOTFS$WORK"
  (git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' _) |
    tar --null -T - -cf - | tar -xf - -C "$ROOTFS$WORK"
  if [ -d prebuilds ]; then cp -r prebuilds "$ROOTFS$WORK/"; fi
  log "copied the checkout to $ROOTFS$WORK"
}

case "${1:-}" in
  ensure) ensure ;;
  sync) sync_checkout ;;
  exec) shift; in_chroot "$WORK" "$*" ;;
  path) echo "$ROOTFS$WORK" ;;
  *) echo "usage: scripts/trixie.sh ensure | sync | exec 'COMMAND' | path" >&2; exit 2 ;;
esac
