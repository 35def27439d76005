# The reelyard image: every process of the production topology runs from it as
# `reelyard <command>` (docker-compose.yml; docs/operations.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg: the studio renders with it and the workers probe finished videos (the
# renderer's own encoder comes with imageio-ffmpeg; this one is for operators too)
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# a user of its own, owning only the data directory (videos, beat's schedule)
RUN groupadd --system --gid 10001 reelyard \
    && useradd --system --uid 10001 --gid reelyard --no-create-home \
        --home-dir /var/lib/reelyard --shell /usr/sbin/nologin reelyard \
    && mkdir -p /var/lib/reelyard/videos /var/lib/reelyard/studio \
    && chown -R reelyard:reelyard /var/lib/reelyard

WORKDIR /opt/reelyard
COPY pyproject.toml README.md ./
COPY reelyard ./reelyard
COPY api ./api
COPY workers ./workers
COPY models ./models
COPY migrations ./migrations
COPY nemo ./nemo
COPY studio ./studio
RUN pip install . && rm -rf /opt/reelyard/build

ENV REELYARD_DATA_DIR=/var/lib/reelyard \
    REELYARD_STORAGE_DIR=/var/lib/reelyard/videos \
    STUDIO_DATA_DIR=/var/lib/reelyard/studio

USER reelyard
WORKDIR /var/lib/reelyard
EXPOSE 8000 8600 5555
ENTRYPOINT ["reelyard"]
CMD ["--help"]
