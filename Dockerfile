# ga4gh-broker: one image, non-root, state in /var/lib/ga4gh-broker.
# `ga4gh-broker serve` runs granian (broker/serve): it may face the network directly; a client slow
# to send its request costs it no thread (docs/operations.md). PID 1 here; it handles SIGTERM.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY broker ./broker
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/ga4gh-broker --create-home broker
COPY --from=build /install /usr/local
COPY policies /etc/ga4gh-broker/policies
ENV BROKER_DATA_DIR=/var/lib/ga4gh-broker \
    BROKER_SERVER__BIND=0.0.0.0:8080 \
    BROKER_POLICY__DIRECTORY=/etc/ga4gh-broker/policies \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER broker
WORKDIR /var/lib/ga4gh-broker
EXPOSE 8080
# granian's master stops its workers on SIGTERM, and kills them after server.timeout_seconds.
STOPSIGNAL SIGTERM
# /readyz answers within server.readyz_timeout_seconds (1 s) even while the store hangs.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["ga4gh-broker"]
CMD ["serve"]
