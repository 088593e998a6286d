# docex: one image for every service (hub, agent, bridge, tsa); the command picks which.
#   docker build -t docex .     then e.g.   docker run docex hub run --home /data/hub
# The county network is isolated: build where PyPI and Debian are reachable, then move
# the image across (docker save / docker load).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# openssl: CMS by hand for operators; poppler-utils: pdfsig; Noto CJK: 公文 PDFs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl poppler-utils fonts-noto-cjk fonts-arphic-ukai \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin docex \
    && mkdir -p /data && chown docex:docex /data

WORKDIR /opt/docex
COPY pyproject.toml README.md ./
COPY docex ./docex
RUN pip install .

USER docex
VOLUME ["/data"]
# 8470 hub read API + dashboard; 9471-9474 metrics of hub, agent, bridge, tsa; 3161 TSA.
EXPOSE 8470 9471 9472 9473 9474 3161
ENTRYPOINT ["docex"]
CMD ["--help"]
