# A mosquitto broker image from Debian's package, for machines without a registry (the tests, and
# compose.yaml with MOSQUITTO_IMAGE=localhost/earmark-mosquitto). Same config path as the official
# eclipse-mosquitto image, so compose.yaml works with either.
#   podman build --network host --build-arg BASE_IMAGE=localhost/debian:bookworm \
#       -t localhost/earmark-mosquitto -f docker/mosquitto.Dockerfile docker
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && mkdir -p /mosquitto/config /mosquitto/data \
    && printf 'listener 1883\nallow_anonymous true\n' >/mosquitto/config/mosquitto.conf \
    && chown -R mosquitto:mosquitto /mosquitto/data
USER mosquitto
EXPOSE 1883
CMD ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
