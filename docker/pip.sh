#!/bin/sh
# pip of the build's /opt/venv, given only the PIP_* build arguments that were set: an empty
# PIP_CERT or PIP_FIND_LINKS would otherwise mean "" to pip.
for v in PIP_CERT PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do
    eval "val=\${$v:-}"
    [ -n "$val" ] || unset "$v"
done
exec /opt/venv/bin/pip "$@"
