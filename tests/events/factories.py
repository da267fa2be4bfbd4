from __future__ import annotations

import factory

from apps.events.models import Source, write_key_hash, write_key_prefix

# The key of the ``source`` fixture: only its digest is stored.
WEB_WRITE_KEY = "wk_test_web"


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    class Params:
        write_key = WEB_WRITE_KEY

    name = "Web"
    write_key_prefix = factory.LazyAttribute(lambda o: write_key_prefix(o.write_key))
    write_key_hash = factory.LazyAttribute(lambda o: write_key_hash(o.write_key))
