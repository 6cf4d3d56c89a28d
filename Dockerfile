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
USER factorysim
ENV CONFIG_PATH=/app/config.yaml PYTHONUNBUFFERED=1
ENTRYPOINT ["factorysim"]
CMD ["simulate", "--lots", "2000", "--report-json", "/tmp/report.json"]
