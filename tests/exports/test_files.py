"""Vendor files: each in its documented header, encoding and splitting, with
only consented people of activated segments, full and incremental."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from apps.consent.services.consent import consent_withdraw
from apps.exports.models import ExportRun
from apps.exports.services import RunAlreadyActive, export_run_execute, export_run_start

from .conftest import files_of, members_set, run_now

pytestmark = pytest.mark.django_db


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_adobe_target_batch_file_has_its_batch_line_and_splits_at_the_row_limit(
    person: Any, audience: Any, destination: Any
) -> None:
    # given: five consented people, all in "shoes", two of them also in "vip"
    people = [person(f"u{n}") for n in range(5)]
    shoes = audience("shoes", people)
    vip = audience("vip", people[:2])
    target, _ = destination("adobe_target", [shoes, vip], settings={"max_rows": 2})
    # when: a full run
    run = run_now(target)
    # then: three files of at most two rows, each starting with Adobe's batch line
    assert run.status == "succeeded", run.error
    files = files_of(run)
    assert list(files) == [f"adobe_target_batch_00{n}.csv" for n in (1, 2, 3)]
    rows: list[str] = []
    for body in files.values():
        lines = body.decode("utf-8").splitlines()
        assert lines[0] == "batch=thirdPartyId,cdp_shoes,cdp_vip"
        assert 1 <= len(lines) - 1 <= 2
        rows += lines[1:]
    assert sorted(rows) == [
        "u0,true,true",
        "u1,true,true",
        "u2,true,false",
        "u3,true,false",
        "u4,true,false",
    ]
    assert (run.profiles, run.rows, run.files, run.skipped_consent) == (5, 5, 3, 0)


def test_adobe_target_splits_at_the_byte_limit_and_takes_pc_id(
    person: Any, audience: Any, destination: Any
) -> None:
    # given: ten people and a 60-byte limit per file
    people = [person(f"person-{n:02d}") for n in range(10)]
    shoes = audience("shoes", people)
    target, _ = destination(
        "adobe_target", [shoes], settings={"max_bytes": 60, "id_column": "pcId"}
    )
    # when
    run = run_now(target)
    # then: no file is over the limit, each has the header, every row is once somewhere
    files = files_of(run)
    assert len(files) > 1
    seen = []
    for body in files.values():
        assert len(body) <= 60
        lines = body.decode().splitlines()
        assert lines[0] == "batch=pcId,cdp_shoes"
        seen += lines[1:]
    assert sorted(seen) == [f"person-{n:02d},true" for n in range(10)]


def test_adobe_settings_refuse_limits_above_adobes(destination: Any) -> None:
    from apps.exports.kinds import SettingsError, settings_validate

    with pytest.raises(SettingsError) as caught:
        settings_validate(
            "adobe_target", {"max_rows": 500_001, "id_column": "email", "colour": "red"}
        )
    assert set(caught.value.errors) == {"max_rows", "id_column", "colour"}


def test_optimizely_lists_are_one_id_per_line_without_header_under_the_size_limit(
    person: Any, audience: Any, destination: Any
) -> None:
    # given: twelve people in one segment, files of at most 40 bytes
    people = [person(f"id-{n:03d}") for n in range(12)]
    shoes = audience("shoes", people)
    optimizely, _ = destination("optimizely", [shoes], settings={"max_bytes": 40})
    # when
    run = run_now(optimizely)
    # then: bare ids, one per line, no header, each file under 40 bytes
    files = files_of(run)
    assert all(name.startswith("optimizely_shoes_") for name in files)
    ids = []
    for body in files.values():
        assert len(body) <= 40
        ids += body.decode().splitlines()
    assert sorted(ids) == [f"id-{n:03d}" for n in range(12)]


def test_dynamic_yield_crm_data_is_utf8_with_the_id_first_and_boolean_columns(
    person: Any, audience: Any, destination: Any
) -> None:
    # given: people with non-Latin ids, hashed as DY recommends for emails
    zoe = person("zoë", email="Zoë@Example.com")
    ivan = person("иван", email="ivan@example.com")
    shoes = audience("shoes", [zoe, ivan])
    bags = audience("bags", [ivan])
    dy, _ = destination("dynamic_yield", [shoes, bags], identifier_type="email", hashing="sha256")
    # when
    run = run_now(dy)
    # then: CRM_data.csv, UTF-8, the id column first, true/false per segment
    files = files_of(run)
    assert list(files) == ["CRM_data.csv"]
    lines = files["CRM_data.csv"].decode("utf-8").splitlines()
    assert lines[0] == "CUID,bags,shoes"
    assert sorted(lines[1:]) == sorted(
        [f"{sha('zoë@example.com')},false,true", f"{sha('ivan@example.com')},true,true"]
    )


def test_google_customer_match_normalizes_hashes_and_leaves_country_and_zip_clear(
    person: Any, audience: Any, destination: Any
) -> None:
    # given: a person with messy contact data
    ada = person(
        "ada",
        email="  Ada.Lovelace@Example.COM ",
        phone="+1 (650) 253-0000",
        traits={
            "firstName": " Ada ",
            "lastName": "Lovelace",
            "address": {"country": "us", "postalCode": "94043"},
        },
    )
    shoes = audience("shoes", [ada])
    google, _ = destination("google_customer_match", [shoes])
    # when
    run = run_now(google)
    # then: Google's headers, SHA-256 hex of the normalized values
    body = files_of(run)["google_customer_match_shoes.csv"].decode("utf-8")
    header, row = body.splitlines()
    assert header == "Email,Phone,First Name,Last Name,Country,Zip"
    assert row.split(",") == [
        sha("ada.lovelace@example.com"),
        sha("+16502530000"),
        sha("ada"),
        sha("lovelace"),
        "US",
        "94043",
    ]


def test_meta_custom_audience_uses_metas_normalization_and_column_names(
    person: Any, audience: Any, destination: Any
) -> None:
    # given
    mary = person(
        "mary",
        email="Mary@Example.com",
        phone="+1 650 253 0000",
        traits={
            "firstName": "Mary-Ann",
            "lastName": "O'Neil",
            "address": {
                "country": "US",
                "postalCode": "94043-1351",
                "city": "New York",
                "state": "NY",
            },
        },
    )
    shoes = audience("shoes", [mary])
    meta, _ = destination("meta_custom_audience", [shoes])
    # when
    run = run_now(meta)
    # then
    body = files_of(run)["meta_custom_audience_shoes.csv"].decode("utf-8")
    header, row = body.splitlines()
    assert header == "EMAIL,PHONE,FN,LN,ZIP,CT,ST,COUNTRY"
    assert row.split(",") == [
        sha("mary@example.com"),
        sha("16502530000"),
        sha("maryann"),
        sha("oneil"),
        sha("94043"),
        sha("newyork"),
        sha("ny"),
        sha("us"),
    ]


def test_only_consented_people_of_activated_segments_leave(
    person: Any, audience: Any, destination: Any
) -> None:
    # given: "shoes" with two consented people and one without consent; "tiny"
    # below its minimum size
    yes1, yes2, no = person("yes1"), person("yes2"), person("no", consent=False)
    shoes = audience("shoes", [yes1, yes2, no])
    tiny = audience("tiny", [yes1], min_size=5)
    optimizely, _ = destination("optimizely", [shoes, tiny])
    # when
    run = run_now(optimizely)
    # then: only the consented, only "shoes"; both recorded
    files = files_of(run)
    assert list(files) == ["optimizely_shoes.txt"]
    assert sorted(files["optimizely_shoes.txt"].decode().split()) == ["yes1", "yes2"]
    assert run.skipped_consent == 1
    assert run.segments_skipped == ["tiny"]
    assert run.segments_exported == ["shoes"]


def test_a_withdrawn_consent_stops_the_next_export(
    person: Any, audience: Any, destination: Any
) -> None:
    # given
    ada, bob = person("ada"), person("bob")
    shoes = audience("shoes", [ada, bob])
    optimizely, _ = destination("optimizely", [shoes])
    assert run_now(optimizely).rows == 2
    # when: Bob withdraws
    consent_withdraw(profile_id=bob.pk, purpose="ads", source="test")
    run = run_now(optimizely)
    # then
    assert files_of(run)["optimizely_shoes.txt"].decode().split() == ["ada"]
    assert run.skipped_consent == 1


def test_incremental_runs_send_only_the_changes_since_the_last_run(
    person: Any, audience: Any, destination: Any
) -> None:
    # given: a full run of ada, bob and cy
    ada, bob, cy, dee = person("ada"), person("bob"), person("cy"), person("dee")
    shoes = audience("shoes", [ada, bob, cy])
    adobe, _ = destination("adobe_target", [shoes])
    optimizely, _ = destination("optimizely", [shoes])
    first = run_now(adobe)
    run_now(optimizely)
    assert first.rows == 3
    # when: bob leaves and dee joins, then incremental runs
    members_set(shoes, [ada, cy, dee])
    run = run_now(adobe, "incremental")
    opt = run_now(optimizely, "incremental")
    # then: only bob and dee, with their state now; the outbox range after the first run
    assert run.outbox_from == first.outbox_to and run.outbox_to > run.outbox_from
    lines = files_of(run)["adobe_target_batch.csv"].decode().splitlines()
    assert lines[0] == "batch=thirdPartyId,cdp_shoes"
    assert sorted(lines[1:]) == ["bob,false", "dee,true"]
    files = files_of(opt)
    assert files["optimizely_shoes_add.txt"].decode().split() == ["dee"]
    assert files["optimizely_shoes_remove.txt"].decode().split() == ["bob"]
    # and a further incremental run with no change sends nobody
    again = run_now(adobe, "incremental")
    assert again.rows == 0
    assert files_of(again)["adobe_target_batch.csv"].decode().splitlines() == [
        "batch=thirdPartyId,cdp_shoes"
    ]


def test_two_runs_of_one_destination_never_overlap_and_a_run_executes_once(
    person: Any, audience: Any, destination: Any
) -> None:
    # given: a pending run
    shoes = audience("shoes", [person("ada")])
    optimizely, _ = destination("optimizely", [shoes])
    run = export_run_start(destination=optimizely)
    # when/then: a second one is refused while it is pending
    with pytest.raises(RunAlreadyActive):
        export_run_start(destination=optimizely)
    done = export_run_execute(run.pk)
    assert done.status == "succeeded"
    # executing it again changes nothing (a retried task)
    again = export_run_execute(run.pk)
    assert again.finished_at == done.finished_at
    assert ExportRun.objects.get(pk=run.pk).export_files.count() == 1
    # and once it is done, a new run may start
    assert export_run_start(destination=optimizely).status == "pending"


def test_people_without_the_destinations_identifier_are_counted_not_sent(
    person: Any, audience: Any, destination: Any
) -> None:
    ada, bob = person("ada", email="ada@example.com"), person("bob")
    shoes = audience("shoes", [ada, bob])
    optimizely, _ = destination("optimizely", [shoes], identifier_type="email")
    run = run_now(optimizely)
    assert files_of(run)["optimizely_shoes.txt"].decode().split() == ["ada@example.com"]
    assert run.skipped_no_identifier == 1


def test_a_run_abandoned_by_a_lost_worker_does_not_block_the_destination(
    person: Any, audience: Any, destination: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    # given: a run that started two hours ago and never finished
    shoes = audience("shoes", [person("ada")])
    optimizely, _ = destination("optimizely", [shoes])
    stuck = export_run_start(destination=optimizely)
    ExportRun.objects.filter(pk=stuck.pk).update(
        status="running", started_at=timezone.now() - timedelta(hours=2)
    )
    # when: a new run is asked for
    fresh = export_run_start(destination=optimizely)
    # then: the old one is failed with the reason, the new one goes ahead
    stuck.refresh_from_db()
    assert stuck.status == "failed" and "abandoned" in stuck.error
    assert export_run_execute(fresh.pk).status == "succeeded"


def test_the_profile_id_is_sent_in_its_canonical_form(
    person: Any, audience: Any, destination: Any
) -> None:
    ada = person("ada")
    shoes = audience("shoes", [ada])
    optimizely, _ = destination("optimizely", [shoes], identifier_type="id")
    run = run_now(optimizely)
    assert files_of(run)["optimizely_shoes.txt"].decode().split() == [str(ada.pk)]
