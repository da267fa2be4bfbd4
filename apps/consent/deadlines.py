"""GDPR Art. 12(3) deadlines: one month after receipt, extendable by two more.

"One month" is a calendar month: the same day of the next month, or that month's
last day when it has no such day (31 January -> 28 or 29 February).

An extension adds months to the original due date, not to the date of receipt.
The two readings differ when the first month is short: received on 31 January,
due 28 February, extended by one month -> 28 March (from the due date), where
"two months from receipt" would say 31 March. Article 12(3) does not settle it;
we take the earlier date, so a request is never answered later than either
reading allows. The decision to extend, and telling the person why, must fall
within the first month (``dsr_extend`` refuses it after the original due date).
"""

from __future__ import annotations

import calendar
from datetime import date

MAX_EXTENSION_MONTHS = 2


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def due_date(received: date, extension_months: int = 0) -> date:
    if not 0 <= extension_months <= MAX_EXTENSION_MONTHS:
        raise ValueError(f"An extension is 0 to {MAX_EXTENSION_MONTHS} months.")
    return add_months(add_months(received, 1), extension_months)
