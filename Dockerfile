# One image for both the web tier and the worker (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORDERFOX_DATA_DIR=/app/var

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Static files are collected at build time (ServeStatic serves them from staticfiles/).
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input \
    && useradd --system --home-dir /app orderfox \
    && mkdir -p /app/var && chown orderfox /app/var
USER orderfox

EXPOSE 8000
CMD ["python", "manage.py", "serve_web", "--host", "0.0.0.0", "--port", "8000", "--processes", "2"]
