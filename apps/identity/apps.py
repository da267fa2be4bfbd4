from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "apps.identity"
    label = "identity"
    verbose_name = "Identity"

    def ready(self) -> None:
        from apps.common.db_roles import truncated_tables

        from .dedup.models import DedupBlockKey

        # A full dedup run rebuilds its blocking index with TRUNCATE.
        truncated_tables.register("identity.dedup_block_key", DedupBlockKey._meta.db_table)
