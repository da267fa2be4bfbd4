from django.apps import AppConfig


class ApiAuthConfig(AppConfig):
    name = "apps.api_auth"
    label = "api_auth"
    verbose_name = "API access"
