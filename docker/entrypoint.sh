#!/bin/sh
# earmark's container entrypoint: fills in what `earmark serve` and `earmark monitor` read from the
# environment, then runs the command (default: earmark serve --host 0.0.0.0).
#   - EARMARK_API_KEY from a secret file when not set: EARMARK_API_KEY_FILE, else the Docker/compose
#     secret /run/secrets/earmark_api_key when present. The key is never printed.
#   - EARMARK_MODEL: the model baked into the image (/opt/earmark/model) when there is one and
#     nothing else was asked for.
set -eu

if [ -z "${EARMARK_API_KEY:-}" ]; then
    key_file=${EARMARK_API_KEY_FILE:-/run/secrets/earmark_api_key}
    if [ -n "${EARMARK_API_KEY_FILE:-}" ] && [ ! -r "$key_file" ]; then
        echo "earmark: EARMARK_API_KEY_FILE=$key_file cannot be read" >&2
        exit 2
    fi
    if [ -r "$key_file" ]; then
        EARMARK_API_KEY=$(cat "$key_file")
        export EARMARK_API_KEY
    fi
fi
unset EARMARK_API_KEY_FILE

if [ -z "${EARMARK_MODEL:-}" ] && [ -f /opt/earmark/model/config.json ]; then
    export EARMARK_MODEL=/opt/earmark/model
fi

exec "$@"
