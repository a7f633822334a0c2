#!/bin/sh
# moat-init: the first process of every moat container, mounted read-only at
# /moat/init/moat-init.sh (never baked into an image, so it works on any image).
# It starts as root and, in order:
#   1. adds moat's CA (mounted at /etc/ssl/certs/moat-ca/ca.crt) to the system trust bundle (and
#      Java's keystore when there is one), so clients that ignore SSL_CERT_FILE and friends trust
#      the proxy too; never fatal;
#   2. with MOAT_FIREWALL=<proxy ip>:<port> (the strict policy), allows outgoing traffic only to
#      loopback, established connections and the proxy; fails closed when it cannot;
#   3. copies the providers' files (staged at /moat/init-files) into HOME=/home/moatuser, then
#      becomes MOAT_UID:MOAT_GID (the workspace's owner on the host) with no capabilities and no
#      way to regain privileges, and execs the command.
# Exit codes: the command's own; 127 when it is not found (as Docker); 125 when this script
# cannot set the container up (the command never ran).
set -u

say() { printf 'moat-init: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 125; }
# Every program this script starts costs a fork and an exec (milliseconds each in a small VM),
# and it runs before every command: shell built-ins do the reading, comparing and copying.

# euid: the effective uid, from /proc (id -u when it is not there).
euid=
while read -r key _ effective _; do
  [ "$key" = Uid: ] && { euid=$effective; break; }
done </proc/self/status 2>/dev/null
[ -n "$euid" ] || euid=$(id -u)
# has_id FILE ID: whether a line of the passwd/group-style FILE has ID in its third field.
has_id() {
  [ -r "$1" ] || return 1
  while IFS=: read -r _ _ id _; do [ "$id" = "$2" ] && return 0; done <"$1"
  return 1
}

[ "$#" -gt 0 ] || fail "no command to run"
[ "$euid" = 0 ] || fail "moat-init must start as root (the container's user was overridden)"

# 1. Trust moat's CA system-wide, where the image allows it. Appending to the bundle is what
#    OpenSSL, GnuTLS, curl, git, python and node read, and costs nothing; update-ca-certificates
#    takes seconds (it rehashes every certificate), so it runs only when a Java keystore exists,
#    which only its hook updates. The copy in /usr/local/share keeps the CA in the bundle if the
#    command runs update-ca-certificates itself (installing a package can).
ca=/etc/ssl/certs/moat-ca/ca.crt
if [ -f "$ca" ]; then
  untrusted="moat's CA is trusted only through SSL_CERT_FILE and similar variables"
  pem=
  while IFS= read -r line || [ -n "$line" ]; do pem="$pem$line
"; done <"$ca"
  if [ -d /usr/local/share/ca-certificates ]; then
    printf '%s' "$pem" 2>/dev/null >/usr/local/share/ca-certificates/moat-ca.crt || true
  fi
  if [ -f /etc/ssl/certs/java/cacerts ] && command -v update-ca-certificates >/dev/null 2>&1; then
    update-ca-certificates >/dev/null 2>&1 || say "warning: update-ca-certificates failed; $untrusted"
  else
    { printf '%s' "$pem" >>/etc/ssl/certs/ca-certificates.crt; } 2>/dev/null \
      || say "warning: cannot write /etc/ssl/certs/ca-certificates.crt; $untrusted"
  fi
fi

# 2. The strict policy: nothing leaves the container except to the proxy.
firewall=${MOAT_FIREWALL:-}
if [ -n "$firewall" ]; then
  proxy_ip=${firewall%:*}
  proxy_port=${firewall##*:}
  case "$proxy_port" in '' | *[!0-9]*) fail "MOAT_FIREWALL must be <ip>:<port>, got '$firewall'" ;; esac
  command -v iptables >/dev/null 2>&1 \
    || fail "the strict network policy needs iptables in the image and there is none (moat adds it to images it generates; with your own image, install iptables in it)"
  fw() { out=$("$@" 2>&1) || fail "cannot install the strict-policy firewall: '$*' failed: $out"; }
  fw iptables -w -F OUTPUT
  fw iptables -w -A OUTPUT -o lo -j ACCEPT
  fw iptables -w -A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  fw iptables -w -A OUTPUT -p tcp -d "$proxy_ip" --dport "$proxy_port" -j ACCEPT
  fw iptables -w -A OUTPUT -p tcp -j REJECT --reject-with tcp-reset
  fw iptables -w -A OUTPUT -j REJECT
  fw iptables -w -P OUTPUT DROP
  if [ "$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null || echo 1)" != 1 ]; then
    command -v ip6tables >/dev/null 2>&1 || fail "IPv6 is on in the container and ip6tables is missing"
    fw ip6tables -w -F OUTPUT
    fw ip6tables -w -A OUTPUT -o lo -j ACCEPT
    fw ip6tables -w -P OUTPUT DROP
  fi
fi

# The terminal's size, set before the command starts: an engine may ignore the size given at
# create, and a resize sent after start can land after the command has read it.
tty_size=${MOAT_TTY_SIZE:-}
case "$tty_size" in
  *[!0-9x]* | '') ;;
  *) [ -t 0 ] && { stty rows "${tty_size%x*}" cols "${tty_size#*x}" 2>/dev/null || true; } ;;
esac

# 3. Drop root.
uid=${MOAT_UID:-0}
gid=${MOAT_GID:-$uid}
unset MOAT_UID MOAT_GID MOAT_FIREWALL MOAT_TTY_SIZE
case "$uid:$gid" in *[!0-9:]* | :* | *:) fail "MOAT_UID and MOAT_GID must be numbers, got '$uid:$gid'" ;; esac

# The home, for root too, with the files providers asked for: moat stages them read-only at
# /moat/init-files, laid out as under the home (tools that write next to their config, like gh,
# cannot have it bind-mounted). Copied, then given to the user.
home=/home/moatuser
mkdir -p "$home" && chown "$uid:$gid" "$home" || fail "cannot create $home"
if [ -d /moat/init-files ]; then
  cp -R /moat/init-files/. "$home"/ || fail "cannot copy the providers' files into $home"
  for entry in /moat/init-files/* /moat/init-files/.[!.]*; do
    if [ -e "$entry" ]; then chown -R "$uid:$gid" "$home/${entry##*/}" || fail "cannot chown $home/${entry##*/}"; fi
  done
fi
export HOME="$home"

if [ "$uid" = 0 ]; then
  # Root stays root (the workspace belongs to root), but under the firewall it must not be able
  # to take it down again.
  if [ -n "$firewall" ]; then
    command -v setpriv >/dev/null 2>&1 || fail "setpriv (util-linux) is missing from the image"
    exec setpriv --inh-caps=-net_admin,-net_raw --bounding-set=-net_admin,-net_raw -- "$@"
  fi
  exec "$@"
fi

# Tools that look the user up (git, ssh, python's getpass) need a passwd entry.
if ! has_id /etc/passwd "$uid"; then
  name=moatuser
  while IFS=: read -r user _; do [ "$user" = moatuser ] && name="moat$uid"; done </etc/passwd 2>/dev/null
  echo "$name:x:$uid:$gid:moat:$home:/bin/sh" >>/etc/passwd 2>/dev/null || say "warning: cannot add user $uid to /etc/passwd"
fi
if ! has_id /etc/group "$gid"; then
  echo "moat$gid:x:$gid:" >>/etc/group 2>/dev/null || say "warning: cannot add group $gid to /etc/group"
fi
command -v setpriv >/dev/null 2>&1 || fail "setpriv (util-linux) is missing from the image; moat needs it to drop root"
exec setpriv --reuid "$uid" --regid "$gid" --clear-groups \
  --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
