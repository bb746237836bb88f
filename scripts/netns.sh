#!/usr/bin/env bash
# Run a command inside a private network namespace whose only interface is loopback.
#
# Why: Orthanc (the real PACS the tests start) has no bind-address option and listens on every
# interface. Inside a fresh network namespace the only interface is `lo`, so nothing any test server
# opens can be reached from outside this machine — Orthanc included — while loopback works as usual
# for every test (vLLM, sekmet-fhir, Chromium pages are all loopback already). No network beyond
# loopback is needed once the environments are installed, so scripts/test.sh runs all of pytest in it.
#
# As root a plain `unshare -n` does it; otherwise a user namespace (`unshare -r -n`) is tried. When
# neither works this fails and says so, rather than running servers on every interface.
# Usage: scripts/netns.sh COMMAND [ARGS...]
set -euo pipefail
if [ "${OKAFLOW_NETNS:-}" = 1 ]; then
  exec "$@"  # already confined (e.g. a nested call)
fi
if [ "$(id -u)" = 0 ]; then flags=(-n); else flags=(-r -n); fi
if ! unshare "${flags[@]}" true 2>/dev/null; then
  echo "cannot create a private network namespace (unshare ${flags[*]} failed): the PACS tests start Orthanc," \
    "which listens on every interface, and are only run confined. Run as root, or enable unprivileged user" \
    "namespaces (Debian: sysctl kernel.unprivileged_userns_clone=1; Ubuntu:" \
    "sysctl kernel.apparmor_restrict_unprivileged_userns=0; a container needs CAP_SYS_ADMIN)." >&2
  exit 1
fi
if ! command -v ip >/dev/null; then
  echo "scripts/netns.sh needs 'ip' to bring loopback up: apt-get install -y iproute2 (scripts/pacs-env.sh does)" >&2
  exit 1
fi
exec unshare "${flags[@]}" -- env OKAFLOW_NETNS=1 sh -c 'ip link set lo up && exec "$@"' netns "$@"
