from __future__ import annotations

import factory

from apps.events.models import Source


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    name = "Web"
    write_key = "wk_test_web"
