from __future__ import annotations

import pytest

from apps.identity.models import Identifier

pytestmark = pytest.mark.django_db


def test_the_profile_page_shows_its_features(post_events, admin_client):
    # given a customer with an order
    post_events("/v1/track", {"userId": "ann", "event": "Order Completed",
                              "properties": {"revenue": 42}})  # fmt: skip
    profile_id = Identifier.objects.get(value="ann").profile_id

    # when
    page = admin_client.get(f"/admin/identity/profile/{profile_id}/change/").content.decode()

    # then
    assert 'id="profile-features"' in page
    assert '<tr class="feature" data-feature="orders_count">' in page
    assert "<code>revenue_total</code></td>\n        <td>42.0</td>" in page
