# ga4gh-broker: one image, gunicorn in front, non-root, state in /var/lib/ga4gh-broker.
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
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["ga4gh-broker"]
CMD ["serve"]
