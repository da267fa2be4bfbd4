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
# collectstatic needs production settings but no database or real secret:
# throwaway random keys (production refuses a known or short one).
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    CDP_PRIVACY_HASH_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    CDP_SECRETS_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput && rm -f /tmp/build.sqlite3 \
    && chown -R cdp:cdp /app

USER cdp
EXPOSE 8000
CMD ["gunicorn", "cdp.wsgi", "-c", "cdp/gunicorn.py", "--bind", "0.0.0.0:8000"]
