"""Admin: the review queue of duplicate candidates, runs and the configuration.

Registered when ``apps/identity/admin.py`` imports this module.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .models import DedupConfig, DedupField, DedupRun, DuplicateCandidate
from .services import duplicate_candidate_merge, duplicate_candidate_reject

FORCE_PERMISSION = "identity.force_merge_profile"


def _name(traits: dict[str, Any]) -> str:
    name = traits.get("name") or " ".join(
        str(traits[k]) for k in ("firstName", "lastName") if traits.get(k)
    )
    return str(name or traits.get("email") or "(no name)")


def _decide(request: HttpRequest, candidates: QuerySet[DuplicateCandidate], decision: str) -> None:
    done = refused = 0
    for pk in candidates.values_list("pk", flat=True):
        if decision == "reject":
            duplicate_candidate_reject(candidate_id=pk, actor=request.user)
            done += 1
            continue
        force = decision == "force" and request.user.has_perm(FORCE_PERMISSION)
        result = duplicate_candidate_merge(candidate_id=pk, actor=request.user, force=force)
        if result.status == DuplicateCandidate.Status.MERGED:
            done += 1
        else:
            refused += 1
            messages.warning(request, f"Pair {pk} not merged: {result.note}")
    verb = "marked as different people" if decision == "reject" else "merged"
    messages.success(request, f"{done} pair(s) {verb}.")
    if refused:
        messages.warning(
            request,
            f"{refused} pair(s) refused by the safety rules"
            + ("" if request.user.has_perm(FORCE_PERMISSION) else "."),
        )


@admin.register(DuplicateCandidate)
class DuplicateCandidateAdmin(admin.ModelAdmin):
    list_display = ("pair", "match_weight", "probability_shown", "status", "vetoes", "created_at")
    list_filter = ("status",)
    list_select_related = ("profile_a", "profile_b")
    search_fields = ("=profile_a__id", "=profile_b__id")
    readonly_fields = (
        "comparison",
        "decision",
        "status",
        "score",
        "probability",
        "note",
        "profile_a",
        "profile_b",
        "merge",
        "run",
        "decided_by",
        "decided_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("comparison", "decision")}),
        (
            "Details",
            {
                "fields": (
                    "status",
                    "score",
                    "probability",
                    "note",
                    "profile_a",
                    "profile_b",
                    "merge",
                    "run",
                    "decided_by",
                    "decided_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    actions = ["merge_pairs", "reject_pairs", "force_merge_pairs"]
    show_full_result_count = False

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        # The queue: pending first, most likely first (the model's own ordering,
        # -score alone, would mix decided pairs in). A column clicked replaces it.
        pending_first = Case(
            When(status=DuplicateCandidate.Status.PENDING, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return [pending_first.asc(), "-score", "pk"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm(FORCE_PERMISSION):
            actions.pop("force_merge_pairs", None)
        return actions

    @admin.display(description="pair")
    def pair(self, obj: DuplicateCandidate) -> str:
        return f"{_name(obj.profile_a.traits)}  ~  {_name(obj.profile_b.traits)}"

    @admin.display(description="match weight", ordering="score")
    def match_weight(self, obj: DuplicateCandidate) -> SafeString:
        # The sum of log2(m/u): each point doubles the odds, so +30 and +45 differ
        # by a factor of 30,000 where both probabilities round to 100 %.
        return format_html(
            '<span title="match weight (log2 of the odds): {}">{}</span>',
            f"{obj.score:.4f}",
            f"{obj.score:+.1f}",
        )

    @admin.display(description="probability", ordering="probability")
    def probability_shown(self, obj: DuplicateCandidate) -> str:
        return probability_text(obj.probability)

    @admin.display(description="vetoes")
    def vetoes(self, obj: DuplicateCandidate) -> str:
        return ", ".join(obj.evidence.get("vetoes", []))

    @admin.display(description="Side by side")
    def comparison(self, obj: DuplicateCandidate) -> SafeString:
        fields = obj.evidence.get("fields", {})
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    name,
                    _show(item.get("values", [None, None])[0]),
                    _show(item.get("values", [None, None])[1]),
                    item.get("label", ""),
                    f"{item.get('similarity', 0):.2f}",
                    f"{item.get('weight', 0):+.2f}",
                )
                for name, item in fields.items()
            ),
        )
        notes = []
        if obj.evidence.get("swapped_names"):
            notes.append("First and last names are swapped on one side.")
        if obj.evidence.get("first_name_slip"):
            notes.append("The first names are one typing or OCR slip apart.")
        notes += [f"No automatic merge: {v}." for v in obj.evidence.get("vetoes", [])]
        return format_html(
            '<table><thead><tr><th>field</th><th><a href="{}">profile A</a></th>'
            '<th><a href="{}">profile B</a></th><th>agreement</th><th>similarity</th>'
            "<th>weight</th></tr></thead><tbody>{}</tbody>"
            '<tfoot><tr><th colspan="5">total score</th><th>{}</th></tr></tfoot></table>{}',
            reverse("admin:identity_profile_change", args=[obj.profile_a_id]),
            reverse("admin:identity_profile_change", args=[obj.profile_b_id]),
            rows,
            f"{obj.score:+.2f}",
            format_html_join("", "<p>{}</p>", ((n,) for n in notes)),
        )

    @admin.display(description="Decision")
    def decision(self, obj: DuplicateCandidate) -> SafeString:
        if obj.status not in (
            DuplicateCandidate.Status.PENDING,
            DuplicateCandidate.Status.REFUSED,
        ):
            return format_html("{}", obj.get_status_display())
        return mark_safe(  # constant markup
            '<input type="submit" name="_dedup_merge" value="Merge">&nbsp;'
            '<input type="submit" name="_dedup_reject" value="Not the same person">'
        )

    def response_change(self, request: HttpRequest, obj: DuplicateCandidate) -> HttpResponse:
        decision = (
            "merge"
            if "_dedup_merge" in request.POST
            else "reject"
            if "_dedup_reject" in request.POST
            else None
        )
        if decision is None:
            return super().response_change(request, obj)
        _decide(request, DuplicateCandidate.objects.filter(pk=obj.pk), decision)
        return HttpResponseRedirect("../")

    @admin.action(description="Merge")
    def merge_pairs(self, request: HttpRequest, queryset: QuerySet[DuplicateCandidate]) -> None:
        _decide(request, queryset, "merge")

    @admin.action(description="Not the same person")
    def reject_pairs(self, request: HttpRequest, queryset: QuerySet[DuplicateCandidate]) -> None:
        _decide(request, queryset, "reject")

    @admin.action(description="Merge, overriding the safety rules")
    def force_merge_pairs(
        self, request: HttpRequest, queryset: QuerySet[DuplicateCandidate]
    ) -> None:
        _decide(request, queryset, "force")


def probability_text(p: float) -> str:
    """The probability with the digits that tell pairs apart: near 1, as 1 minus the
    chance that they are two people ("1 \N{MINUS SIGN} 2.5e-7"), not "100.0 %"."""
    if p < 0.999:
        return f"{p:.1%}"
    rest = 1.0 - p
    if rest <= 0.0:
        return "1 \N{MINUS SIGN} <1e-16"
    mantissa, _, exponent = f"{rest:.1e}".partition("e")
    return f"1 \N{MINUS SIGN} {mantissa.removesuffix('.0')}e{int(exponent)}"


def _show(value: Any) -> str:
    return "—" if value in (None, "") else str(value)


@admin.register(DedupRun)
class DedupRunAdmin(admin.ModelAdmin):
    list_display = (
        "started_at",
        "mode",
        "status",
        "profiles_scanned",
        "pairs_compared",
        "auto_merged",
        "queued",
        "refused",
        "duration_seconds",
    )
    list_filter = ("status", "mode")
    readonly_fields = [f.name for f in DedupRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DedupFieldInline(admin.TabularInline):
    model = DedupField
    fields = (
        "position",
        "name",
        "trait",
        "comparator",
        "enabled",
        "blocking",
        "m_probabilities",
        "u_probabilities",
        "weights",
        "frequency_adjusted",
    )
    extra = 0


@admin.register(DedupConfig)
class DedupConfigAdmin(admin.ModelAdmin):
    list_display = ("__str__", "auto_merge_probability", "review_probability", "updated_at")
    inlines = [DedupFieldInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not DedupConfig.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
