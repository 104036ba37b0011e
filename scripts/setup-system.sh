#!/usr/bin/env bash
# Installs the Debian packages the test suites use, when they are missing:
# Chromium for the sandbox browser test, and Django 4.2 (bookworm-backports)
# for the Django actions. Safe to run again; does nothing once installed.
set -euo pipefail

have_django() {
  /usr/bin/python3 -c 'import django, sys; sys.exit(0 if django.VERSION >= (4, 2) else 1)' 2>/dev/null
}

if [ -x /usr/bin/chromium ] && have_django; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "setup-system: Chromium or Django 4.2 is missing; run 'sudo bash scripts/setup-system.sh' once" >&2
  exit 1
fi

backports=/etc/apt/sources.list.d/backports.sources
if [ ! -f "$backports" ]; then
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$backports"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
[ -x /usr/bin/chromium ] || apt-get install -y -q chromium
have_django || apt-get install -y -q -t bookworm-backports python3-django
