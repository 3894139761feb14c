"""Public holidays a planned meeting should not fall on, as data (Bộ luật Lao động 2019, Điều 112).

Solar holidays repeat every year. Tết Nguyên đán and Giỗ Tổ Hùng Vương follow the lunar calendar, so
their solar dates are listed per year (Vietnamese lunar calendar, UTC+7; computed with Hồ Ngọc Đức's
algorithm and checked against the published calendars). Years outside the table are not flagged: extend
the table rather than guess. The Tết leave itself is decided each year; the span flagged here (from New
Year's Eve to the fifth day) is the part every recent decision covered.
"""
from __future__ import annotations

import datetime as dt

# (day, month) -> name.
SOLAR: dict[tuple[int, int], str] = {
    (1, 1): "Tết Dương lịch",
    (30, 4): "Ngày Giải phóng miền Nam",
    (1, 5): "Ngày Quốc tế Lao động",
    (2, 9): "Quốc khánh",
}

# Year -> solar (month, day) of the first day of Tết (mùng 1 tháng Giêng âm lịch).
TET: dict[int, tuple[int, int]] = {
    2019: (2, 5), 2020: (1, 25), 2021: (2, 12), 2022: (2, 1), 2023: (1, 22), 2024: (2, 10),
    2025: (1, 29), 2026: (2, 17), 2027: (2, 6), 2028: (1, 26), 2029: (2, 13), 2030: (2, 2),
    2031: (1, 23), 2032: (2, 11), 2033: (1, 31), 2034: (2, 19), 2035: (2, 8),
}
TET_DAYS_BEFORE, TET_DAYS_AFTER = 1, 4  # New Year's Eve .. the fifth day

# Year -> solar (month, day) of Giỗ Tổ Hùng Vương (mùng 10 tháng 3 âm lịch).
HUNG_KINGS: dict[int, tuple[int, int]] = {
    2019: (4, 14), 2020: (4, 2), 2021: (4, 21), 2022: (4, 10), 2023: (4, 29), 2024: (4, 18),
    2025: (4, 7), 2026: (4, 26), 2027: (4, 16), 2028: (4, 4), 2029: (4, 23), 2030: (4, 12),
    2031: (4, 1), 2032: (4, 19), 2033: (4, 9), 2034: (4, 28), 2035: (4, 17),
}


def holiday_on(day: dt.date) -> str:
    """The name of the public holiday on `day`, or ''."""
    if (day.day, day.month) in SOLAR:
        return SOLAR[(day.day, day.month)]
    # Tết can start in late January, so the eve may fall in the year before.
    for year in (day.year, day.year + 1):
        if year in TET:
            first = dt.date(year, *TET[year])
            if -TET_DAYS_BEFORE <= (day - first).days <= TET_DAYS_AFTER:
                return "Tết Nguyên đán"
    if day.year in HUNG_KINGS and (day.month, day.day) == HUNG_KINGS[day.year]:
        return "Giỗ Tổ Hùng Vương"
    return ""
