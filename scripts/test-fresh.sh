#!/bin/sh
# make test-fresh: the README's `make test` on a freshly installed Debian bookworm (issue 17).
#   1. base   debootstrap --variant=minbase bookworm + make, git, ca-certificates, from the Debian
#             mirror of this machine's apt sources (/etc/apt/sources.list, sources.list.d/*.list and
#             *.sources; never a hard-coded host). Cached in $FRESH/base, made again when the mirror
#             or the package list changes, or with FRESH_REBUILD=1.
#   2. root   a pristine copy of the base in $FRESH/root (the previous run's root is deleted first),
#             given what a new machine of this kind has: this machine's Debian apt sources, its local
#             apt settings (the /etc/apt/apt.conf.d files no package owns: proxies, mirror options),
#             its local CA certificates (/usr/local/share/ca-certificates, then
#             update-ca-certificates), its npm settings (/etc/npmrc, /usr/etc/npmrc, ~/.npmrc),
#             /etc/resolv.conf and /etc/hosts; and policy-rc.d, so packages installed by the tests
#             start no services (a chroot has no init). Then `git archive HEAD` into /src: committed
#             work only, never build outputs or node_modules; committed there as the one commit of
#             a new repository, as a clone has a .git.
#   3. test   in a private mount and PID namespace: the root bind-mounted on itself (/ is a mount
#             point on a real machine), proc, sys, dev, /dev/shm and /run mounted, chroot, `cd /src &&
#             make test` with a clean environment (PATH, HOME, LANG, TERM and proxy variables only).
#             The namespace's mounts and processes go away with it, whatever happens; the trap
#             unmounts anything left under the root all the same.
# Prints the time of the inner `make test` and of the whole run. Needs root, debootstrap and the
# network to the mirror and the npm registry. Not part of `make test`: it installs everything
# (torch, chromium, ...) from scratch, which takes long.
#   scripts/test-fresh.sh [DIR]        DIR defaults to build/fresh
# Environment: FRESH_REBUILD=1 remakes the base; FRESH_TARGET (default: test) is the make target run
# inside; FRESH_SUITE=bookworm.
set -eu
t_start=$(date +%s)
REPO=$(cd "$(dirname "$0")/.." && pwd)
FRESH=${1:-$REPO/build/fresh}
SUITE=${FRESH_SUITE:-bookworm}
TARGET=${FRESH_TARGET:-test}
BASE=$FRESH/base
ROOT=$FRESH/root
INCLUDE=make,git,ca-certificates

die() { echo "test-fresh: $*" >&2; exit 1; }
say() { echo "==== test-fresh: $*"; }

# ---- inside the private namespaces (re-executed by unshare below) -------------------------------
if [ "${1:-}" = --inside ]; then
  ROOT=$2 TARGET=$3
  mount --bind "$ROOT" "$ROOT"   # / is a mount point on a real machine (buildah remounts it)
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs sys "$ROOT/sys"
  mount --rbind /dev "$ROOT/dev"
  mount -t tmpfs -o mode=1777 shm "$ROOT/dev/shm"
  mount -t tmpfs -o mode=755 run "$ROOT/run"
  cat >"$ROOT/tmp/test-fresh-run" <<EOF
#!/bin/sh
set -e
cd /src
t0=\$(date +%s)
rc=0
make $TARGET || rc=\$?
echo "==== test-fresh: make $TARGET inside the fresh root: exit \$rc after \$((\$(date +%s) - t0)) s"
exit \$rc
EOF
  chmod +x "$ROOT/tmp/test-fresh-run"
  set --
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    val=$(eval "printf '%s' \"\${$v:-}\"")
    if [ -n "$val" ]; then set -- "$@" "$v=$val"; fi
  done
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 TERM="${TERM:-dumb}" "$@" chroot "$ROOT" /tmp/test-fresh-run
fi

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"

# ---- this machine's Debian apt sources: "URI SUITE COMPONENTS" lines ----------------------------
# One-line format (deb [opts] URI SUITE COMP...) and deb822 (.sources: Types/URIs/Suites/Components,
# Enabled: no skipped). Only the SUITE, SUITE-updates and SUITE-security entries are kept: the
# machine's third-party repositories are not part of a fresh Debian.
apt_sources() {
  { for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 4 {
      printf "%s %s", $2, $3; for (i = 4; i <= NF; i++) printf " %s", $i; print "" }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush() {
           if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/ && uris != "" && suites != "") {
             nu = split(uris, u, " "); ns = split(suites, s, " ")
             for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j], comps
           }
           types = uris = suites = comps = enabled = ""; key = ""
         }
         /^[ \t]*#/ { next }
         /^[ \t]*$/ { flush(); next }
         /^[ \t]/ { if (key == "uris") uris = uris " " $0; next }
         { key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
           gsub(/^[ \t]+|[ \t]+$/, "", val)
           if (key == "types") types = val; else if (key == "uris") uris = val
           else if (key == "suites") suites = val; else if (key == "components") comps = val
           else if (key == "enabled") enabled = tolower(val) }
         END { flush() }' "$f"
  done; } | awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security"' | sed 's:/* : :' | sort -u
}
SOURCES=$(apt_sources)
MIRROR=$(echo "$SOURCES" | awk -v s="$SUITE" '$2 == s { print $1; exit }')
[ -n "$MIRROR" ] || die "no '$SUITE' entry in this machine's apt sources (/etc/apt/sources.list,
/etc/apt/sources.list.d/*.list, *.sources): cannot tell which Debian mirror to use"
say "Debian mirror $MIRROR (from this machine's apt sources)"

# ---- cleanup: whatever is mounted under the root, even after a failure ---------------------------
cleanup() {
  rc=$?
  for m in $(awk -v r="$ROOT/" 'index($2 "/", r) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  [ $rc -eq 0 ] || say "FAILED (exit $rc) after $(($(date +%s) - t_start)) s; the root is left in $ROOT"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cleanup_stale() {   # a previous run killed hard may have left mounts
  awk -v r="$ROOT/" 'index($2 "/", r) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -R "$m" 2>/dev/null || umount -l "$m"; done
}

# ---- 1. the cached base ----------------------------------------------------------------------
stamp="$SUITE $MIRROR minbase $INCLUDE"
if [ -n "${FRESH_REBUILD:-}" ] || [ "$(cat "$BASE.ok" 2>/dev/null)" != "$stamp" ]; then
  say "debootstrap --variant=minbase --include=$INCLUDE $SUITE (log: $FRESH/debootstrap.log)"
  rm -rf "$BASE" "$BASE.ok" "$BASE.tmp"
  mkdir -p "$FRESH"
  t0=$(date +%s)
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$BASE.tmp" "$MIRROR" \
    >"$FRESH/debootstrap.log" 2>&1 || { tail -20 "$FRESH/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$BASE.tmp/var/cache/apt/archives/"*.deb
  mv "$BASE.tmp" "$BASE"
  echo "$stamp" >"$BASE.ok"
  say "base made in $(($(date +%s) - t0)) s"
else
  say "base: $BASE (cached; FRESH_REBUILD=1 remakes it)"
fi

# ---- 2. a pristine root -----------------------------------------------------------------------
cleanup_stale
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
# apt: the Debian sources of this machine, and its local settings
rm -f "$ROOT/etc/apt/sources.list"
echo "$SOURCES" | awk '{ printf "deb %s %s", $1, $2; for (i = 3; i <= NF; i++) printf " %s", $i; print "" }' \
  >"$ROOT/etc/apt/sources.list.d/$SUITE.list"
for f in /etc/apt/apt.conf.d/*; do
  [ -f "$f" ] && ! dpkg -S "$f" >/dev/null 2>&1 && cp "$f" "$ROOT/etc/apt/apt.conf.d/"
done
# CA certificates added to this machine (the package's own are in the root already)
if [ -d /usr/local/share/ca-certificates ]; then
  cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
  chroot "$ROOT" update-ca-certificates >/dev/null
fi
# npm settings (the registry, its CA file, ...)
for f in /etc/npmrc /usr/etc/npmrc "$HOME/.npmrc"; do
  [ -f "$f" ] || continue
  case $f in "$HOME"/*) dst=$ROOT/root/${f#"$HOME"/} ;; *) dst=$ROOT$f ;; esac
  mkdir -p "$(dirname "$dst")" && cp "$f" "$dst"
done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/hosts "$ROOT/etc/hosts"
printf '#!/bin/sh\n# test-fresh: a chroot has no init; packages start no services\nexit 101\n' \
  >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"
# the repository: HEAD as committed
mkdir -p "$ROOT/src"
git -C "$REPO" archive --format=tar HEAD | tar -x -C "$ROOT/src"
# committed as the one commit of a new repository, as a clone has a .git (container-test stages its
# build context with git ls-files)
rev=$(git -C "$REPO" rev-parse --short HEAD)
git -C "$ROOT/src" init -q
git -C "$ROOT/src" add -A
git -C "$ROOT/src" -c user.name=test-fresh -c user.email=test-fresh@localhost commit -q -m "git archive of $rev"
dirty=$(git -C "$REPO" status --porcelain --untracked-files=no | wc -l)
say "testing HEAD $rev$( [ "$dirty" -eq 0 ] || echo " (uncommitted changes in $dirty files are NOT tested)")"

# ---- 3. make test inside ----------------------------------------------------------------------
say "chroot $ROOT: cd /src && make $TARGET"
rc=0
unshare --mount --pid --fork --propagation private "$REPO/scripts/test-fresh.sh" --inside "$ROOT" "$TARGET" || rc=$?
say "make test-fresh: exit $rc after $(($(date +%s) - t_start)) s in all"
exit $rc
