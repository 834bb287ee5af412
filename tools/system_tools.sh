#!/bin/sh
# The system tools the tests and the grader need beside the Python packages, installed from
# Debian's packages where this machine allows it (`make test` and `make grade` run this):
#
#   bubblewrap  (bwrap)     the sandbox every student notebook is graded in
#   chromium                the browser test renders every page of the built book
#   postgresql  (server)    the parallel grading workers share a PostgreSQL gradebook
#
# It installs with apt-get when it runs as root or with passwordless sudo (Debian, Ubuntu).
# Anywhere else (macOS, no root, no apt) it installs nothing and says what is missing; the
# tests that need a missing tool then skip, naming it (with CI=true they fail instead), and
# pytest ends with one line per missing tool and the command that installs it.
# Nothing here ever fails the build: a tool that could not be installed is reported.
set -u

missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
# Debian keeps initdb, pg_ctl and postgres in /usr/lib/postgresql/<version>/bin, off PATH
pg=no
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && pg=yes
done
[ "$pg" = yes ] || command -v initdb >/dev/null 2>&1 || missing="$missing postgresql"

if [ -z "$missing" ]; then
  echo "system tools: bubblewrap, chromium and postgresql are installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    sudo="sudo -n"
  else
    sudo="none"
  fi
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$sudo" = none ]; then
  echo "system tools: missing:$missing (this machine has no apt-get, or no root or"
  echo "  passwordless sudo, so they are not installed here). The tests that need them skip;"
  echo "  on Debian or Ubuntu: sudo apt-get install$missing"
  exit 0
fi

echo "system tools: installing$missing with apt-get (the sandbox, the browser test, the"
echo "  PostgreSQL gradebook test)"
if $sudo apt-get update -qq >/dev/null \
   && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
  echo "system tools: installed$missing"
else
  echo "system tools: apt-get could not install$missing; the tests that need them skip"
  echo "  (they fail under CI=true). Install by hand: sudo apt-get install$missing"
fi
exit 0
