# factorysim — slim, non-root image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY simulator ./simulator
COPY machines ./machines
RUN pip install --no-cache-dir --prefix=/install '.[embedded]'

FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 factorysim
COPY --from=build /install /usr/local
WORKDIR /app
COPY config.yaml ./config.yaml
COPY profiles ./profiles
RUN mkdir -p /data/kafka && chown -R factorysim /data
VOLUME /data
USER factorysim
ENV CONFIG_PATH=/app/config.yaml PYTHONUNBUFFERED=1 HEALTH_CHECK_PORT=8080 \
    FACTORYSIM_EMBEDDED_DATA_DIR=/data/kafka
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HEALTH_CHECK_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["factorysim"]
CMD ["run"]
