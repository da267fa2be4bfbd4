# Production image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=cdp.settings.production

RUN groupadd --system cdp && useradd --system --gid cdp --home /app cdp
WORKDIR /app

COPY requirements/ requirements/
RUN pip install -r requirements/production.txt

COPY . .
# collectstatic needs settings but no database or real secret.
RUN SECRET_KEY=build-only CDP_PRIVACY_HASH_KEY=build-only DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput && rm -f /tmp/build.sqlite3 \
    && chown -R cdp:cdp /app

USER cdp
EXPOSE 8000
CMD ["gunicorn", "cdp.wsgi", "-c", "cdp/gunicorn.py", "--bind", "0.0.0.0:8000"]
