#!/usr/bin/env bash
# The real PACS and EHR servers the integration tests start (tests/integration/servers/conftest.py):
#   - Orthanc with its DICOMweb plugin, from Debian's packages (orthanc, orthanc-dicomweb), plus iproute2
#     for scripts/netns.sh;
#   - sekmet-fhir (a FHIR R4 server with a SMART backend-services token endpoint) in its own
#     environment, .venv-fhir: okaflow never imports it, the tests start `sekmet serve` as a process.
# Idempotent. Prints the sekmet executable's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
SEKMET_VERSION=0.1.1
venv="${OKAFLOW_FHIR_VENV:-.venv-fhir}"
py="${PYTHON:-python3}"

if [ ! -x /usr/sbin/Orthanc ] || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || ! command -v ip >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "the PACS tests need Orthanc: sudo apt-get install -y --no-install-recommends orthanc orthanc-dicomweb iproute2" >&2
    exit 1
  fi
  echo "installing Debian's orthanc, orthanc-dicomweb and iproute2 for the PACS tests" >&2
  # Debian's orthanc package starts a system service that listens on every interface (Orthanc has
  # no bind-address option). The tests start their own, confined; keep the package's from starting
  # by denying service starts for this install, unless the machine already has a policy.
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  trap '[ -z "$added_policy" ] || rm -f "$policy"' EXIT
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb iproute2 >/dev/null
  # On a machine with systemd the package also enables its service for the next boot: disable it.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now orthanc.service >/dev/null 2>&1 || true
  fi
fi

stamp="$venv/.okaflow-sekmet-$SEKMET_VERSION"
if [ ! -f "$stamp" ]; then
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  log="$venv/install.log"
  echo "installing sekmet-fhir $SEKMET_VERSION into $venv (log: $log)" >&2
  if ! { "$venv/bin/python" -m pip install -q --upgrade pip &&
         "$venv/bin/python" -m pip install -q "sekmet-fhir==$SEKMET_VERSION" &&
         "$venv/bin/sekmet" --help >/dev/null; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "installing sekmet-fhir failed; full log in $log" >&2
    exit 1
  fi
  touch "$stamp"
fi
echo "$venv/bin/sekmet"
